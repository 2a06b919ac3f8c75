//! `commune-ioc user add|passwd|list|disable|unlock`: accounts, on the box (works
//! while the server runs; changes take effect at once). The changes are the
//! same use cases as the HTTP admin routes (`commune_ioc::app::users`).

use anyhow::{Context, Result};
use clap::Subcommand;

use commune_ioc::app::{users, Actor};
use commune_ioc::auth::Accounts;
use commune_ioc::config::Config;

/// What to do with the accounts.
#[derive(Subcommand, Debug)]
pub enum UserAction {
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
    /// Lift the login lockouts of a user name, from every address, on the
    /// running server (within a second or two).
    Unlock {
        /// User name.
        name: String,
    },
}

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

/// Run one action on the store named by `cfg`.
pub fn run(cfg: &Config, action: UserAction) -> Result<()> {
    let accounts = Accounts::open(&cfg.journal_path(), &cfg.auth)?;
    let actor = Actor::cli();
    match action {
        UserAction::Add {
            name,
            role,
            password_stdin,
        } => {
            let role = users::parse_role(&role)?;
            let (password, generated) = read_password(password_stdin)?;
            let name = users::add(&accounts, &actor, &name, role, &password)?;
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
            users::set_password(&accounts, &actor, &name, &password)?;
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
            users::disable(&accounts, &actor, &name)?;
            println!("Đã khóa tài khoản {name} và thu hồi mọi mã truy cập của nó.");
        }
        UserAction::Unlock { name } => {
            let name = users::unlock(&accounts, &actor, &name)?;
            println!("Đã mở khóa đăng nhập cho {name}: máy chủ đang chạy áp dụng trong vài giây.");
        }
    }
    Ok(())
}
