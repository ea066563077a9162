/*
 * A windowed program for the Wine smoke test of the stop ladder's second step: it shows a
 * window and exits 0 when the window gets WM_CLOSE (as a GUI program does). Built with
 * MinGW by scripts/wine-smoke.sh; never shipped.
 */
#include <windows.h>
#include <stdio.h>

static LRESULT CALLBACK proc(HWND h, UINT m, WPARAM w, LPARAM l)
{
    if (m == WM_CLOSE) {
        printf("WM_CLOSE received: closing\n");
        fflush(stdout);
        DestroyWindow(h);
        return 0;
    }
    if (m == WM_DESTROY) {
        PostQuitMessage(0);
        return 0;
    }
    return DefWindowProcW(h, m, w, l);
}

int main(void)
{
    WNDCLASSW wc = {0};
    wc.lpfnWndProc = proc;
    wc.hInstance = GetModuleHandleW(NULL);
    wc.lpszClassName = L"SparklioSmokeWindow";
    if (!RegisterClassW(&wc)) {
        printf("RegisterClass failed: %lu\n", GetLastError());
        return 2;
    }
    HWND h = CreateWindowW(L"SparklioSmokeWindow", L"Sparklio smoke window",
                           WS_OVERLAPPEDWINDOW | WS_VISIBLE, 0, 0, 240, 120, NULL, NULL,
                           wc.hInstance, NULL);
    if (!h) {
        printf("CreateWindow failed: %lu (no display?)\n", GetLastError());
        return 3;
    }
    printf("window open\n");
    fflush(stdout);
    MSG msg;
    while (GetMessageW(&msg, NULL, 0, 0) > 0) {
        TranslateMessage(&msg);
        DispatchMessageW(&msg);
    }
    printf("window closed: exiting 0\n");
    fflush(stdout);
    return 0;
}
