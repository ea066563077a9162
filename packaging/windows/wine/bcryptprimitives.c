/*
 * A stand-in bcryptprimitives.dll for running the Windows build under Wine 8.0 only.
 *
 * Rust's standard library (1.78+) gets random bytes from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10/11 have and Wine 8.0 lacks, so the exe does not
 * even load there. This exports ProcessPrng on top of RtlGenRandom (advapi32's
 * SystemFunction036, which Wine implements). scripts/wine-smoke.sh puts it beside the
 * exe under test; it is never shipped (scripts/package-windows.sh refuses to).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
