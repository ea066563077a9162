//! "Port already in use": a service is never started twice, and a port held by a
//! process we did not start is reported with that process where the OS tells us.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Who holds a port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortHolder {
    pub port: u16,
    pub pid: Option<u32>,
    pub name: Option<String>,
    /// The service of this Desk whose process (or one of its children) holds it.
    pub service: Option<String>,
}

impl PortHolder {
    pub fn describe(&self) -> String {
        if let Some(service) = &self.service {
            return format!(
                "port {} is held by service {service} (pid {}), which Sparklio Desk runs: two services name this port, run one at a time",
                self.port,
                self.pid.map_or_else(|| "?".into(), |p| p.to_string())
            );
        }
        match (&self.pid, &self.name) {
            (Some(pid), Some(name)) => format!(
                "port {} is already in use by pid {pid} ({name}), a process Sparklio Desk did not start",
                self.port
            ),
            (Some(pid), None) => format!(
                "port {} is already in use by pid {pid}, a process Sparklio Desk did not start",
                self.port
            ),
            _ => format!(
                "port {} is already in use by another program (which one could not be determined)",
                self.port
            ),
        }
    }
}

/// `Some(holder)` if something listens on `port` (loopback answer, or the wildcard
/// address cannot be bound). Blocking but quick; call from `spawn_blocking`.
pub fn check_port(port: u16) -> Option<PortHolder> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let answers = TcpStream::connect_timeout(&loopback, Duration::from_millis(300)).is_ok();
    let bind_refused = matches!(
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
    );
    if !answers && !bind_refused {
        return None;
    }
    let found = listeners::get_processes_by_port(port)
        .ok()
        .and_then(|set| set.into_iter().min_by_key(|p| p.pid));
    let pid = found.as_ref().map(|p| p.pid);
    Some(PortHolder {
        port,
        pid,
        // The OS's short name (15 characters on Linux) only when the executable's is unknown.
        name: pid
            .and_then(executable_name)
            .or_else(|| found.map(|p| p.name)),
        service: None,
    })
}

/// A process's executable file name, whole.
fn executable_name(pid: u32) -> Option<String> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
    let mut sys = System::new().ok()?;
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_exe(UpdateKind::Always),
    );
    let exe = sys.process(pid)?.exe()?.file_name()?;
    Some(exe.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_is_reported_with_this_process() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let holder = check_port(port).expect("port is taken");
        assert_eq!(holder.port, port);
        if cfg!(target_os = "linux") {
            assert_eq!(holder.pid, Some(std::process::id()));
        }
        assert!(holder.describe().contains(&port.to_string()));
        drop(l);
        assert_eq!(check_port(port), None);
    }
}
