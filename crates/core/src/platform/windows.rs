//! Win32 helpers for the supervisor's stop ladder (CTRL_BREAK → WM_CLOSE → TerminateJobObject)
//! and for start-up diagnostics.
//!
//! Consoles: `GenerateConsoleCtrlEvent` only reaches processes attached to the *caller's*
//! console. A supervised child is started in its own process group
//! (`CREATE_NEW_PROCESS_GROUP`, group id = its pid) and
//! - shares our console when we have one (`sparklio-desk serve` in a terminal): the break is
//!   sent directly;
//! - gets its own hidden console (`CREATE_NO_WINDOW`) when we have none (the tray app, the
//!   Windows service) or when it is detached (it must survive our console closing): to send
//!   it a break we attach to its console for the duration of the call ([`ctrl_break`]),
//!   which a process without a console can do; one at a time, under a lock.

// Win32 calls through the `windows` crate are `unsafe` by nature; each block says why it is sound.
#![allow(unsafe_code)]

use std::sync::Mutex;
use windows::core::{s, w};
use windows::Win32::Foundation::{CloseHandle, HWND, LPARAM, WPARAM};
use windows::Win32::System::Console::{
    AttachConsole, FreeConsole, GenerateConsoleCtrlEvent, GetConsoleProcessList, GetStdHandle,
    SetConsoleCtrlHandler, SetStdHandle, CTRL_BREAK_EVENT, STD_ERROR_HANDLE, STD_INPUT_HANDLE,
    STD_OUTPUT_HANDLE,
};
use windows::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows::Win32::UI::WindowsAndMessaging::{
    EnumWindows, GetWindowThreadProcessId, IsWindowVisible, PostMessageW, WM_CLOSE,
};

/// Only one console attachment at a time in this process.
static CONSOLE_LOCK: Mutex<()> = Mutex::new(());

/// Held while a child is started: `ctrl_break` may attach this process to another child's
/// console for a moment, and a child started meanwhile would be judged (and placed) by that
/// console instead of ours: on it, its own later CTRL_BREAK fails and it is killed at once.
pub fn console_guard() -> std::sync::MutexGuard<'static, ()> {
    CONSOLE_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether this process has a console (a terminal, or the console Windows gives a console
/// program); false for the GUI tray app and for a Windows service.
pub fn has_console() -> bool {
    let mut list = [0u32; 4];
    // SAFETY: a valid buffer; returns 0 when the process has no console.
    unsafe { GetConsoleProcessList(&mut list) > 0 }
}

/// Send CTRL_BREAK to the process group `pid` (a child started with
/// `CREATE_NEW_PROCESS_GROUP`). `shares_our_console`: the child was started on our console.
/// Returns how it was delivered, or why it could not be.
pub fn ctrl_break(pid: u32, shares_our_console: bool) -> Result<&'static str, String> {
    let _guard = CONSOLE_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if shares_our_console {
        // SAFETY: plain Win32 call; our own process is not in group `pid`.
        return unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) }
            .map(|()| "CTRL_BREAK to its process group on our console")
            .map_err(|e| format!("GenerateConsoleCtrlEvent: {e}"));
    }
    if has_console() {
        return Err("it has its own console and this process is attached to another one".into());
    }
    // SAFETY: standard handles are saved and restored around the attachment, so output
    // of this process keeps going where it went (or nowhere) after FreeConsole.
    unsafe {
        let saved = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
            .map(|which| (which, GetStdHandle(which).ok()));
        // ERROR_ACCESS_DENIED here means we hold a console handle that no console call
        // accepts (what Wine gives a console program started without a terminal). Freeing it
        // would let the attach succeed, but Wine then stops turning SIGINT into Ctrl-C for us
        // and cannot deliver the break anyway: report it and let the ladder go on.
        AttachConsole(pid).map_err(|e| format!("AttachConsole({pid}): {e}"))?;
        // We are not in the child's group, but ignore Ctrl-C while attached all the same.
        let _ = SetConsoleCtrlHandler(None, true);
        let sent = GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid);
        let _ = FreeConsole();
        let _ = SetConsoleCtrlHandler(None, false);
        for (which, handle) in saved {
            if let Some(h) = handle {
                let _ = SetStdHandle(which, h);
            }
        }
        sent.map(|()| "CTRL_BREAK to its process group on its own (hidden) console")
            .map_err(|e| format!("GenerateConsoleCtrlEvent: {e}"))
    }
}

/// Post WM_CLOSE to every top-level window owned by one of `pids`; returns how many.
pub fn close_windows(pids: &[u32]) -> usize {
    struct Ctx<'a> {
        pids: &'a [u32],
        posted: usize,
    }
    unsafe extern "system" fn each(hwnd: HWND, lparam: LPARAM) -> windows::core::BOOL {
        // SAFETY: lparam is the &mut Ctx passed below, alive for the EnumWindows call.
        let ctx = unsafe { &mut *(lparam.0 as *mut Ctx) };
        let mut pid = 0u32;
        unsafe { GetWindowThreadProcessId(hwnd, Some(&mut pid)) };
        if ctx.pids.contains(&pid)
            && unsafe { IsWindowVisible(hwnd) }.as_bool()
            && unsafe { PostMessageW(Some(hwnd), WM_CLOSE, WPARAM(0), LPARAM(0)) }.is_ok()
        {
            ctx.posted += 1;
        }
        true.into()
    }
    let mut ctx = Ctx { pids, posted: 0 };
    // SAFETY: the callback only touches ctx, which outlives the call.
    let _ = unsafe { EnumWindows(Some(each), LPARAM(&mut ctx as *mut Ctx as isize)) };
    ctx.posted
}

/// Live processes descending from `root` (not `root` itself), from a process snapshot.
/// Parent ids stay recorded after a parent exits, so this finds orphans of a dead leader.
/// `conhost.exe` (the host of a child's own console, started as its child) is left out:
/// it ends by itself once the processes on its console are gone.
pub fn descendants(root: u32) -> Vec<u32> {
    descendants_named(root)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// [`descendants`] with their program names (`python.exe`), for the log.
pub fn descendants_named(root: u32) -> Vec<(u32, String)> {
    let mut pairs = Vec::new();
    let mut names = std::collections::HashMap::new();
    let mut hosts = Vec::new();
    // SAFETY: snapshot walk with a correctly sized entry; the handle is closed below.
    unsafe {
        let Ok(snap) = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) else {
            return vec![];
        };
        let mut entry = PROCESSENTRY32W {
            dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
            ..Default::default()
        };
        let mut ok = Process32FirstW(snap, &mut entry).is_ok();
        while ok {
            pairs.push((entry.th32ProcessID, entry.th32ParentProcessID));
            let len = entry.szExeFile.iter().position(|&c| c == 0).unwrap_or(0);
            let name = String::from_utf16_lossy(&entry.szExeFile[..len]);
            if name.eq_ignore_ascii_case("conhost.exe") {
                hosts.push(entry.th32ProcessID);
            }
            names.insert(entry.th32ProcessID, name);
            ok = Process32NextW(snap, &mut entry).is_ok();
        }
        let _ = CloseHandle(snap);
    }
    crate::platform::tree_of(root, &pairs)
        .into_iter()
        .filter(|pid| !hosts.contains(pid))
        .map(|pid| (pid, names.remove(&pid).unwrap_or_default()))
        .collect()
}

/// Wine's version, when running under Wine.
pub fn wine_version() -> Option<String> {
    // SAFETY: looking up an export by name; the function takes no argument and returns a
    // static NUL-terminated string.
    unsafe {
        let ntdll = GetModuleHandleW(w!("ntdll.dll")).ok()?;
        let f = GetProcAddress(ntdll, s!("wine_get_version"))?;
        let f: unsafe extern "C" fn() -> *const std::ffi::c_char = std::mem::transmute(f);
        let p = f();
        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}
