//! The `commune-ioc` command: a thin shell over the library.
//!
//! ```text
//! commune-ioc demo                       # embedded broker + simulator + backend, Bình Lư example
//! commune-ioc serve --config FILE        # the backend against any MQTT broker
//! commune-ioc check-config FILE          # validate a config, list every problem
//! commune-ioc simulate --config FILE     # publish realistic commune traffic
//! commune-ioc user add|passwd|list|disable  # accounts, on the box
//! ```

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use commune_ioc::config::{self, Config};
use commune_ioc::{server, sim};

#[derive(Parser, Debug)]
#[command(
    name = "commune-ioc",
    version,
    about = "Backend of a commune's Intelligent Operations Center (IOC)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the backend against the MQTT broker named in the config.
    Serve {
        /// Config file (TOML). Keys can be overridden by IOC__SECTION__KEY.
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        /// Write the bound HTTP address here once listening (for tests and scripts).
        #[arg(long, env = "IOC_PORT_FILE")]
        port_file: Option<PathBuf>,
    },
    /// Validate a config file and list every problem with its key and reason.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Publish realistic commune traffic to a broker.
    Simulate {
        /// Config file: the commune, its villages and devices.
        #[arg(
            long,
            env = "IOC_CONFIG",
            default_value = "config/examples/binh-lu.toml"
        )]
        config: PathBuf,
        /// Broker host (default: mqtt.host from the config).
        #[arg(long, env = "IOC_SIM_HOST")]
        host: Option<String>,
        /// Broker port (default: mqtt.port from the config).
        #[arg(long, env = "IOC_SIM_PORT")]
        port: Option<u16>,
        /// Messages per second.
        #[arg(long, env = "IOC_SIM_RATE", default_value_t = 20.0)]
        rate: f64,
        /// Stop after this many messages.
        #[arg(long, env = "IOC_SIM_COUNT")]
        count: Option<u64>,
        /// Random seed (same seed, same traffic).
        #[arg(long, env = "IOC_SIM_SEED", default_value_t = 2026)]
        seed: u64,
    },
    /// Manage user accounts in the store named by the config (works while
    /// the server runs; changes take effect at once).
    User {
        /// Config file (its store.path holds the accounts).
        #[arg(long, env = "IOC_CONFIG", default_value = "config/commune.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: UserAction,
    },
    /// The demo: embedded broker, traffic simulator and backend on this box.
    Demo {
        /// Config file of the example commune.
        #[arg(
            long,
            env = "IOC_CONFIG",
            default_value = "config/examples/binh-lu.toml"
        )]
        config: PathBuf,
        /// HTTP address (port 0 picks a free one).
        #[arg(long, env = "IOC_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Port of the embedded MQTT broker (default: 1883 if free, else any free port).
        #[arg(long, env = "IOC_DEMO_MQTT_PORT")]
        mqtt_port: Option<u16>,
        /// Store directory (default: the config's store.path).
        #[arg(long, env = "IOC_DEMO_STORE")]
        store: Option<PathBuf>,
        /// Simulated messages per second.
        #[arg(long, env = "IOC_DEMO_RATE", default_value_t = 20.0)]
        rate: f64,
        /// Write the bound HTTP address here once listening.
        #[arg(long, env = "IOC_PORT_FILE")]
        port_file: Option<PathBuf>,
    },
    /// Exit 0 when a running backend answers /healthz (for Docker's
    /// HEALTHCHECK, which has no curl in the image).
    Healthcheck {
        /// The backend's HTTP address.
        #[arg(long, env = "IOC_HEALTH_ADDR", default_value = "127.0.0.1:8080")]
        addr: String,
    },
}

/// GET /healthz with a plain HTTP/1.0 request; Ok when it answers 200.
fn healthcheck(addr: &str) -> Result<()> {
    use std::io::{Read, Write};
    use std::time::Duration;
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("`{addr}` không phải địa chỉ dạng 127.0.0.1:8080"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .with_context(|| format!("không kết nối được {addr} (cannot connect)"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.set_write_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 32];
    let n = s.read(&mut head)?;
    let status = String::from_utf8_lossy(&head[..n]);
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        bail!(
            "{addr}/healthz trả lời bất thường: {}",
            status.lines().next().unwrap_or("")
        )
    }
}

#[derive(Subcommand, Debug)]
enum UserAction {
    /// Create a user. The password is read from stdin with
    /// --password-stdin, otherwise generated and printed once.
    Add {
        /// User name (a-z, 0-9, '.', '-', '_').
        name: String,
        /// viewer (read only), operator (duty officer) or admin.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (and re-enable the account); signs it out.
    Passwd {
        /// User name.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user and revoke its tokens.
    Disable {
        /// User name.
        name: String,
    },
}

fn init_logging() {
    commune_ioc::logging::init();
}

fn load(path: &Path) -> Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("không mở được địa chỉ {addr}: có chương trình khác đang dùng cổng này? Chọn địa chỉ khác: với demo dùng --listen 127.0.0.1:8081, với serve đặt http.listen hoặc IOC__HTTP__LISTEN (cannot listen on {addr})"))
}

fn write_port_file(path: Option<&Path>, addr: SocketAddr) -> Result<()> {
    if let Some(p) = path {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

fn free_port(preferred: u16) -> Result<u16> {
    if StdListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    let l = StdListener::bind(("127.0.0.1", 0)).context("no free port for the embedded broker")?;
    Ok(l.local_addr()?.port())
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        // One readable message for people, no backtrace.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: OK — hợp lệ: {} ({}), {} thôn/bản, {} camera, {} cụm loa, {} cảm biến, {} chỉ tiêu",
                    file.display(),
                    c.commune.name,
                    c.commune.id,
                    c.villages.len(),
                    c.cameras.len(),
                    c.speakers.len(),
                    c.sensors.len(),
                    c.indicators.len()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("Tệp cấu hình chưa dùng được, cần sửa các lỗi sau (vị trí: tệp:dòng:cột, khóa, lý do).");
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
        Command::Healthcheck { addr } => healthcheck(&addr),
        Command::Serve { config, port_file } => {
            init_logging();
            let cfg = load(&config)?;
            let listener = bind(&cfg.http.listen).await?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, commune = %cfg.commune.id, "HTTP listening");
            write_port_file(port_file.as_deref(), addr)?;
            let cancel = shutdown_signal();
            let config_path = config.display().to_string();
            server::run(cfg, listener, cancel, move |h| {
                if let Some(pw) = &h.first_admin_password {
                    print_first_admin(pw, &config_path);
                }
            })
            .await?;
            Ok(())
        }
        Command::User { config, action } => user_command(&config, action),
        Command::Simulate {
            config,
            host,
            port,
            rate,
            count,
            seed,
        } => {
            init_logging();
            let cfg = load(&config)?;
            let host = host.unwrap_or_else(|| cfg.mqtt.host.clone());
            let port = port.unwrap_or(cfg.mqtt.port);
            let cancel = shutdown_signal();
            tracing::info!(%host, port, rate, "publishing simulated traffic");
            let sent = sim::publish(&cfg, &host, port, rate, count, seed, cancel).await?;
            tracing::info!(sent, "simulator stopped");
            Ok(())
        }
        Command::Demo {
            config,
            listen,
            mqtt_port,
            store,
            rate,
            port_file,
        } => {
            init_logging();
            let mut cfg = load(&config)?;
            if !cfg!(feature = "embedded-broker") {
                bail!("this build has no embedded broker: rebuild with the default features");
            }
            cfg.mqtt.embedded = true;
            cfg.mqtt.host = "127.0.0.1".into();
            cfg.mqtt.port = match mqtt_port {
                Some(p) => p,
                None => free_port(1883)?,
            };
            cfg.mqtt.username = None;
            cfg.mqtt.password = None;
            cfg.mqtt.tls = false;
            if let Some(s) = store {
                cfg.store.path = s;
            }
            let listener = bind(&listen).await?;
            let addr = listener.local_addr()?;
            let cancel = shutdown_signal();
            let sim_cfg = cfg.clone();
            let sim_cancel = cancel.child_token();
            let mqtt_port = cfg.mqtt.port;
            let commune = cfg.commune.name.clone();
            let port_file2 = port_file.clone();
            let config_shown = config.display().to_string();
            server::run(cfg, listener, cancel, move |h| {
                let shown = if addr.ip().is_unspecified() {
                    format!("http://127.0.0.1:{}/", addr.port())
                } else {
                    format!("http://{addr}/")
                };
                if let Some(pw) = &h.first_admin_password {
                    print_first_admin(pw, &config_shown);
                }
                let login = demo_login(&h);
                println!();
                println!("  Trung tâm giám sát và điều hành thông minh — {commune} (bản chạy thử)");
                match &login {
                    Ok((password, kiosk)) => {
                        println!("  Màn hình giám sát:  {shown}?kiosk=1&token={kiosk}");
                        println!(
                            "  Đăng nhập:          {shown}  (tài khoản demo / mật khẩu {password})"
                        );
                    }
                    Err(e) => println!("  Không tạo được tài khoản chạy thử: {e}"),
                }
                println!("  MQTT (nhúng):       127.0.0.1:{mqtt_port}");
                println!("  Dừng: Ctrl+C");
                println!();
                if let Err(e) = write_port_file(port_file2.as_deref(), addr) {
                    tracing::error!(error = %e, "cannot write port file");
                }
                tokio::spawn(async move {
                    match sim::publish(
                        &sim_cfg,
                        "127.0.0.1",
                        mqtt_port,
                        rate,
                        None,
                        2026,
                        sim_cancel,
                    )
                    .await
                    {
                        Ok(n) => tracing::info!(sent = n, "simulator stopped"),
                        Err(e) => tracing::error!(error = %e, "simulator failed"),
                    }
                });
            })
            .await?;
            Ok(())
        }
    }
}

/// Print the generated password of the first admin, once, on stderr (not
/// through the log).
fn print_first_admin(password: &str, config: &str) {
    eprintln!();
    eprintln!("  ==============================================================");
    eprintln!("  Đã tạo tài khoản quản trị đầu tiên:");
    eprintln!("    tên đăng nhập: admin");
    eprintln!("    mật khẩu:      {password}");
    eprintln!("  Mật khẩu này chỉ hiện MỘT LẦN. Hãy ghi lại, hoặc đổi bằng:");
    eprintln!("    commune-ioc user passwd admin --config {config}");
    eprintln!("  ==============================================================");
    eprintln!();
}

/// The demo's own login: a `demo` admin with a fresh password and a fresh
/// kiosk token on every start (earlier demo kiosk tokens are revoked).
fn demo_login(h: &server::Handle) -> Result<(String, String)> {
    use commune_ioc::auth::{AccountError, Role};
    let password = commune_ioc::auth::password::generate(16);
    match h.accounts.add_user("demo", Role::Admin, &password) {
        Ok(()) => {}
        Err(AccountError::Exists(_)) => h.accounts.set_password("demo", &password)?,
        Err(e) => return Err(e.into()),
    }
    for k in h.accounts.kiosk_tokens()? {
        if k.label == DEMO_KIOSK && k.revoked_at.is_none() {
            h.accounts.revoke_kiosk(k.id)?;
        }
    }
    let (_, token) = h.accounts.create_kiosk(DEMO_KIOSK, "demo")?;
    Ok((password, token))
}

const DEMO_KIOSK: &str = "Màn hình chạy thử";

fn read_password(from_stdin: bool) -> Result<(String, bool)> {
    if !from_stdin {
        return Ok((commune_ioc::auth::password::generate(20), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("không đọc được mật khẩu từ stdin")?;
    Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
}

fn user_command(config: &Path, action: UserAction) -> Result<()> {
    use commune_ioc::auth::{Accounts, NewAudit, Outcome, Role};
    let cfg = load(config)?;
    let accounts = Accounts::open(&cfg.journal_path(), &cfg.auth)?;
    let audit = |action: &str, object: &str| {
        accounts.audit(&NewAudit {
            actor: "cli",
            role: None,
            addr: None,
            action,
            object: Some(object),
            outcome: Outcome::Ok,
            detail: Some("commune-ioc user"),
        });
    };
    match action {
        UserAction::Add {
            name,
            role,
            password_stdin,
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("vai trò `{role}` không có: dùng viewer, operator hoặc admin");
            };
            let (password, generated) = read_password(password_stdin)?;
            accounts.add_user(&name, role, &password)?;
            audit("user_create", &name);
            println!("Đã tạo tài khoản {name} ({}).", role.as_str());
            if generated {
                println!("Mật khẩu (chỉ hiện một lần): {password}");
            }
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = read_password(password_stdin)?;
            accounts.set_password(&name, &password)?;
            audit("user_password", &name);
            println!("Đã đặt mật khẩu mới cho {name}; các phiên đăng nhập cũ đã bị đăng xuất.");
            if generated {
                println!("Mật khẩu (chỉ hiện một lần): {password}");
            }
        }
        UserAction::List => {
            println!(
                "{:<24} {:<10} {:<12} tạo lúc",
                "tài khoản", "vai trò", "trạng thái"
            );
            for u in accounts.users()? {
                let created = u
                    .created_at
                    .with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
                    .format("%d/%m/%Y %H:%M");
                println!(
                    "{:<24} {:<10} {:<12} {created}",
                    u.username,
                    u.role.as_str(),
                    if u.disabled {
                        "đã khóa"
                    } else {
                        "hoạt động"
                    }
                );
            }
        }
        UserAction::Disable { name } => {
            accounts.disable(&name)?;
            audit("user_disable", &name);
            println!("Đã khóa tài khoản {name} và thu hồi mọi mã truy cập của nó.");
        }
    }
    Ok(())
}
