//! `agentry user …` and `agentry key …`: account and key administration from the host, straight
//! on the database (no running server needed). Each command returns the text to print.

use std::io::BufRead;

use agentry_domain::auth::{
    ApiKeyId, Email, NewApiKey, NewUser, Principal, Role, Scope, UserPatch, Username,
};
use agentry_domain::page::Page;
use agentry_domain::ports::SecretGenerator;
use agentry_domain::services::AuthService;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::{StartError, open_database, services};

/// Characters of a generated password.
const GENERATED_PASSWORD_CHARS: usize = 20;

/// `agentry user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Prints a generated password unless `--password-stdin` is given.
    Add {
        /// Login name.
        username: String,
        /// `admin`, `editor` or `viewer`.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (ends the user's sessions). Prints a generated password unless
    /// `--password-stdin` is given.
    Passwd {
        /// Login name.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

/// `agentry key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; its secret is printed once.
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: admin, write, read, invoke.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Comma-separated agent keys it may call (all when absent).
        #[arg(long, value_delimiter = ',')]
        agents: Option<Vec<String>>,
        /// When it stops working (RFC 3339).
        #[arg(long)]
        expires_at: Option<String>,
        /// Its own request rate per minute.
        #[arg(long)]
        rate_limit_per_minute: Option<u32>,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key by id (`key_…`).
    Revoke {
        /// The key's id.
        id: String,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database or the auth set-up.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The command was refused.
    #[error("{0}")]
    Refused(String),
}

impl From<agentry_domain::Error> for CliError {
    fn from(e: agentry_domain::Error) -> Self {
        Self::Refused(e.to_string())
    }
}

impl From<agentry_domain::Invalid> for CliError {
    fn from(e: agentry_domain::Invalid) -> Self {
        Self::Refused(format!("invalid {}: {}", e.field, e.reason))
    }
}

async fn service(config: &Config) -> Result<AuthService, CliError> {
    let (db, _) = open_database(config).await?;
    // The same wiring as a server's (through the caches' decorators), so that a revocation
    // here moves the change counter that running servers follow.
    Ok(services(config, &db, None).await?.auth)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The password: the first line of stdin, or a generated one (returned to be shown).
fn password(from_stdin: bool) -> Result<(SecretString, bool), CliError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Refused(format!("cannot read the password: {e}")))?;
        let pw = line.trim_end_matches(['\r', '\n']).to_owned();
        return Ok((SecretString::from(pw), false));
    }
    Ok((
        agentry_auth::RandomSecrets.random_alphanumeric(GENERATED_PASSWORD_CHARS),
        true,
    ))
}

/// Runs `agentry user …`.
///
/// # Errors
/// [`CliError`] with a message for the operator.
pub async fn user(config: &Config, command: UserCommand) -> Result<String, CliError> {
    let auth = service(config).await?;
    match command {
        UserCommand::Add {
            username,
            role,
            email,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            let user = auth
                .create_user(NewUser {
                    username: Username::parse(&username)?,
                    email: email.as_deref().map(Email::parse).transpose()?,
                    role: Role::parse(&role)?,
                    password: password.clone(),
                })
                .await?;
            let mut out = format!(
                "created user {} ({}, {})",
                user.username, user.id, user.role
            );
            if generated {
                out.push_str(&format!(
                    "\npassword: {}\n(shown only this once)",
                    password.expose_secret()
                ));
            }
            Ok(out)
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let user = auth
                .get_user_by_username(&Username::parse(&username)?)
                .await?;
            let (password, generated) = password(password_stdin)?;
            auth.update_user(
                &user.id,
                UserPatch {
                    password: Some(password.clone()),
                    ..UserPatch::default()
                },
            )
            .await?;
            let mut out = format!(
                "password of {} changed; its sessions were ended",
                user.username
            );
            if generated {
                out.push_str(&format!(
                    "\npassword: {}\n(shown only this once)",
                    password.expose_secret()
                ));
            }
            Ok(out)
        }
        UserCommand::List => {
            let mut out = format!(
                "{:<38} {:<24} {:<7} {:<28} CREATED",
                "ID", "USERNAME", "ROLE", "EMAIL"
            );
            let mut offset = 0;
            loop {
                let page = auth.list_users(Page::new(Some(100), Some(offset))?).await?;
                for u in &page.items {
                    out.push_str(&format!(
                        "\n{:<38} {:<24} {:<7} {:<28} {}",
                        u.id.as_str(),
                        u.username.as_str(),
                        u.role.as_str(),
                        u.email.as_ref().map_or("-", |e| e.as_str()),
                        time(u.created_at)
                    ));
                }
                offset += page.items.len() as u64;
                if page.items.is_empty() || offset >= page.total {
                    break;
                }
            }
            Ok(out)
        }
    }
}

/// Runs `agentry key …`. Keys made here have no creating user.
///
/// # Errors
/// [`CliError`] with a message for the operator.
pub async fn key(config: &Config, command: KeyCommand) -> Result<String, CliError> {
    let auth = service(config).await?;
    match command {
        KeyCommand::Create {
            name,
            scopes,
            agents,
            expires_at,
            rate_limit_per_minute,
        } => {
            let expires_at = expires_at
                .as_deref()
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| CliError::Refused("--expires-at must be RFC 3339".into()))
                })
                .transpose()?;
            let created = auth
                .create_api_key(
                    NewApiKey {
                        name,
                        scopes: Scope::parse_list(&scopes)?,
                        agents,
                        expires_at,
                        rate_limit_per_minute,
                    },
                    &Principal::development(),
                )
                .await?;
            Ok(format!(
                "created API key {} ({})\nkey: {}\n(shown only this once; send it as 'Authorization: Bearer <key>')",
                created.key.id,
                created.key.prefix,
                created.secret.expose_secret()
            ))
        }
        KeyCommand::List => {
            let now = Utc::now();
            let mut out = format!(
                "{:<37} {:<13} {:<24} {:<20} {:<8} LAST USED",
                "ID", "PREFIX", "NAME", "SCOPES", "STATUS"
            );
            let mut offset = 0;
            loop {
                let page = auth
                    .list_api_keys(None, Page::new(Some(100), Some(offset))?)
                    .await?;
                for k in &page.items {
                    let status = if k.revoked_at.is_some() {
                        "revoked"
                    } else if k.is_active(now) {
                        "active"
                    } else {
                        "expired"
                    };
                    let scopes: Vec<&str> = k.scopes.iter().map(Scope::as_str).collect();
                    out.push_str(&format!(
                        "\n{:<37} {:<13} {:<24} {:<20} {:<8} {}",
                        k.id.as_str(),
                        k.prefix,
                        k.name,
                        scopes.join(","),
                        status,
                        k.last_used_at.map_or_else(|| "-".to_owned(), time)
                    ));
                }
                offset += page.items.len() as u64;
                if page.items.is_empty() || offset >= page.total {
                    break;
                }
            }
            Ok(out)
        }
        KeyCommand::Revoke { id } => {
            let id = ApiKeyId::parse(&id)?;
            if auth.revoke_api_key(&id).await? {
                Ok(format!("revoked {id}"))
            } else {
                Err(CliError::Refused(format!("no active API key with id {id}")))
            }
        }
    }
}
