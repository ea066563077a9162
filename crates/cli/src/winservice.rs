//! `sparklio-desk service install|uninstall|start|stop|status` and `service run`: the
//! headless core as a Windows service, so the gateway and supervision come back after a
//! reboot (a Windows Update, say) before anyone logs in.
//!
//! - `install` (elevated prompt) registers `SparklioDesk`, start type automatic, run as
//!   LocalSystem, restarted by Windows 5 s / 30 s / 60 s after a crash, with the launch
//!   arguments `service run --config <file> --data-dir <dir>`: the config file and data
//!   folder of the owner who installs it (resolved now, from the owner's %APPDATA%), so the
//!   service and the tray share one config and one database.
//! - `run` is what Windows starts: it serves exactly like `serve`, logs (JSON lines) to
//!   `<data_dir>\logs\service.log`, accepts the key in `<data_dir>\admin.key` (created on
//!   first start) as an admin key, and stops cleanly on the service Stop / Shutdown control.
//! - The tray app finds the running core on `server.bind` and attaches to it instead of
//!   starting its own (see `src-tauri/src/lifecycle.rs`).

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// The service's name (`sc query SparklioDesk`).
pub const SERVICE_NAME: &str = "SparklioDesk";

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Register the service (automatic start, LocalSystem) and start it. Elevated prompt.
    Install {
        /// Data folder for the service; default: this user's (storage.data_dir or %APPDATA%).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Register only, do not start now.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and remove the service (config and data stay). Elevated prompt.
    Uninstall,
    /// Start the installed service.
    Start,
    /// Stop the installed service (its supervised services stop with it).
    Stop,
    /// Show whether the service is installed and running, and its command line.
    Status,
    /// The service's entry point, started by Windows (not from a console).
    #[command(hide = true)]
    Run {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[cfg(not(windows))]
pub fn command(_config: Option<PathBuf>, _cmd: ServiceCommand) -> ExitCode {
    eprintln!(
        "`sparklio-desk service` manages the Windows service {SERVICE_NAME} and exists on Windows \
         only; elsewhere run `sparklio-desk serve` under the system's service manager (e.g. a systemd unit)"
    );
    ExitCode::from(2)
}

#[cfg(windows)]
pub fn command(config: Option<PathBuf>, cmd: ServiceCommand) -> ExitCode {
    let result = match cmd {
        ServiceCommand::Install { data_dir, no_start } => imp::install(config, data_dir, no_start),
        ServiceCommand::Uninstall => imp::uninstall(),
        ServiceCommand::Start => imp::start(),
        ServiceCommand::Stop => imp::stop(),
        ServiceCommand::Status => imp::status(),
        ServiceCommand::Run { data_dir } => return imp::run(config, data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::SERVICE_NAME;
    use anyhow::{anyhow, Context};
    use sparklio_core::config::ConfigInput;
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    const SERVICE_TYPE: ServiceType = ServiceType::OWN_PROCESS;

    fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
        ServiceManager::local_computer(None::<&str>, access)
            .map_err(|e| explain(e, "open the service manager"))
    }

    /// "Access is denied" becomes advice.
    fn explain(e: windows_service::Error, what: &str) -> anyhow::Error {
        let text = match &e {
            windows_service::Error::Winapi(io) => io.to_string(),
            other => other.to_string(),
        };
        if let windows_service::Error::Winapi(io) = &e {
            if io.raw_os_error() == Some(5) {
                return anyhow!("cannot {what}: access denied. Run this from an elevated prompt (Terminal → Run as administrator)");
            }
            if io.raw_os_error() == Some(1060) {
                return anyhow!("cannot {what}: the service {SERVICE_NAME} is not installed (`sparklio-desk service install`)");
            }
        }
        anyhow!("cannot {what}: {text}")
    }

    pub fn install(
        config_flag: Option<PathBuf>,
        data_dir: Option<PathBuf>,
        no_start: bool,
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("where is this program?")?;
        let config_file = crate::config_path(config_flag.clone())
            .ok_or_else(|| anyhow!("no config folder: pass --config FILE"))?;
        if !config_file.exists() {
            println!(
                "note: {} does not exist yet; the service runs on the built-in defaults until it does \
                 (`sparklio-desk config init --profile gpu-desktop` writes one)",
                config_file.display()
            );
        }
        // The data folder as this user sees it (LocalSystem's own %APPDATA% is elsewhere).
        let data_dir = match data_dir {
            Some(d) => d,
            None => {
                sparklio_core::load_config(&ConfigInput::from_process(Some(config_file.clone())))
                    .map(|l| l.config.storage.resolved_data_dir())
                    .map_err(|p| {
                        anyhow!(
                            "the config has {} problem(s): run `sparklio-desk config check`",
                            p.len()
                        )
                    })?
            }
        };
        let info = ServiceInfo {
            name: SERVICE_NAME.into(),
            display_name: "Sparklio Desk".into(),
            service_type: SERVICE_TYPE,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe,
            launch_arguments: vec![
                "service".into(),
                "run".into(),
                "--config".into(),
                config_file.clone().into_os_string(),
                "--data-dir".into(),
                data_dir.clone().into_os_string(),
            ],
            dependencies: vec![],
            account_name: None, // LocalSystem
            account_password: None,
        };
        let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let service = m
            .create_service(
                &info,
                ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
            )
            .map_err(|e| explain(e, "create the service"))?;
        let _ = service.set_description(
            "Sparklio Desk: the LLM/Media gateway and the supervisor of Ollama and ComfyUI, without a login",
        );
        let restart = |s| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(s),
        };
        let _ = service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![restart(5), restart(30), restart(60)]),
        });
        println!("installed the service {SERVICE_NAME} (automatic start, LocalSystem)");
        println!("  config: {}", config_file.display());
        println!("  data:   {}", data_dir.display());
        if !no_start {
            service
                .start(&[] as &[&std::ffi::OsStr])
                .map_err(|e| explain(e, "start the service"))?;
            wait_for(&service, ServiceState::Running, Duration::from_secs(30))?;
            println!(
                "started; log: {}",
                data_dir.join("logs").join("service.log").display()
            );
        }
        Ok(())
    }

    pub fn uninstall() -> anyhow::Result<()> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let service = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .map_err(|e| explain(e, "open the service"))?;
        let state = service.query_status().map(|s| s.current_state).ok();
        if state != Some(ServiceState::Stopped) {
            let _ = service.stop();
            wait_for(&service, ServiceState::Stopped, Duration::from_secs(60))?;
        }
        service
            .delete()
            .map_err(|e| explain(e, "delete the service"))?;
        println!("removed the service {SERVICE_NAME} (config and data are kept)");
        Ok(())
    }

    pub fn start() -> anyhow::Result<()> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let service = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::START | ServiceAccess::QUERY_STATUS,
            )
            .map_err(|e| explain(e, "open the service"))?;
        service
            .start(&[] as &[&std::ffi::OsStr])
            .map_err(|e| explain(e, "start the service"))?;
        wait_for(&service, ServiceState::Running, Duration::from_secs(30))?;
        println!("{SERVICE_NAME} is running");
        Ok(())
    }

    pub fn stop() -> anyhow::Result<()> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let service = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::STOP | ServiceAccess::QUERY_STATUS,
            )
            .map_err(|e| explain(e, "open the service"))?;
        service.stop().map_err(|e| explain(e, "stop the service"))?;
        wait_for(&service, ServiceState::Stopped, Duration::from_secs(60))?;
        println!("{SERVICE_NAME} is stopped");
        Ok(())
    }

    pub fn status() -> anyhow::Result<()> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let service = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG,
            )
            .map_err(|e| explain(e, "open the service"))?;
        let status = service
            .query_status()
            .map_err(|e| explain(e, "query the service"))?;
        println!("{SERVICE_NAME}: {:?}", status.current_state);
        if let Ok(cfg) = service.query_config() {
            println!("  start:   {:?}", cfg.start_type);
            println!("  command: {}", cfg.executable_path.display());
        }
        Ok(())
    }

    fn wait_for(
        service: &windows_service::service::Service,
        state: ServiceState,
        within: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let now = service
                .query_status()
                .map_err(|e| explain(e, "query the service"))?
                .current_state;
            if now == state {
                return Ok(());
            }
            if start.elapsed() > within {
                return Err(anyhow!(
                    "the service is {now:?}, not {state:?}, after {within:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// What `service run` was started with (the dispatcher's entry takes no context).
    struct RunArgs {
        config: Option<PathBuf>,
        data_dir: Option<PathBuf>,
    }
    static RUN_ARGS: OnceLock<RunArgs> = OnceLock::new();

    pub fn run(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> ExitCode {
        let _ = RUN_ARGS.set(RunArgs { config, data_dir });
        match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "error: `service run` is started by Windows' service manager ({e}); \
                     to run in this console use `sparklio-desk serve`"
                );
                ExitCode::FAILURE
            }
        }
    }

    define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<OsString>) {
        let stop = Arc::new(tokio::sync::Notify::new());
        let on_control = {
            let stop = stop.clone();
            move |control| match control {
                ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                    stop.notify_one();
                    ServiceControlHandlerResult::NoError
                }
                ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
                _ => ServiceControlHandlerResult::NotImplemented,
            }
        };
        let Ok(status) = service_control_handler::register(SERVICE_NAME, on_control) else {
            return;
        };
        let report = |state, code: u32, wait: Duration| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: SERVICE_TYPE,
                current_state: state,
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: if code == 0 {
                    ServiceExitCode::Win32(0)
                } else {
                    ServiceExitCode::ServiceSpecific(code)
                },
                checkpoint: 0,
                wait_hint: wait,
                process_id: None,
            });
        };
        report(ServiceState::Running, 0, Duration::default());
        let code = match serve_as_service(stop) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("service stopped with an error: {e:#}");
                1
            }
        };
        report(ServiceState::Stopped, code, Duration::default());
    }

    fn serve_as_service(stop: Arc<tokio::sync::Notify>) -> anyhow::Result<()> {
        let args = RUN_ARGS.get().ok_or_else(|| anyhow!("no arguments"))?;
        let loaded = sparklio_core::load_config(&ConfigInput::from_process(args.config.clone()))
            .map_err(|p| {
                anyhow!(
                    "config: {} problem(s): {}",
                    p.len(),
                    p.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            });
        // A service has no console: its log goes to <data_dir>\logs\service.log.
        let data_dir = args.data_dir.clone().or_else(|| {
            loaded
                .as_ref()
                .ok()
                .map(|l| l.config.storage.resolved_data_dir())
        });
        if let Some(dir) = &data_dir {
            log_to_file(&dir.join("logs").join("service.log"));
        }
        sparklio_core::telemetry::init_tracing(sparklio_core::telemetry::LogFormat::Json);
        let loaded = loaded?;
        tracing::info!("starting as the Windows service {SERVICE_NAME}");
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(crate::serve(
            loaded,
            crate::ServeOptions {
                bind: None,
                insecure_no_auth: false,
                data_dir: args.data_dir.clone(),
                admin_key_file: true,
                config_input: ConfigInput::from_process(args.config.clone()),
            },
            Some(stop),
        ))
    }

    /// Point this process's stderr (where the log goes) at `path`, appended.
    #[allow(unsafe_code)] // SetStdHandle with a handle we own for the life of the process
    fn log_to_file(path: &std::path::Path) {
        use std::os::windows::io::IntoRawHandle;
        use windows::Win32::Foundation::HANDLE;
        use windows::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let raw = file.into_raw_handle();
            // SAFETY: the handle stays open for the life of the process (into_raw_handle).
            let _ = unsafe { SetStdHandle(STD_ERROR_HANDLE, HANDLE(raw)) };
        }
    }
}
