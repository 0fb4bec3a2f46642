//! The credentials loadgen presents to a broker (`--user`, `--password-file`, `--token-file`),
//! which combinations each protocol can carry, and the command that carries them where it is a
//! command of its own (hubbub's AUTH, Redis's AUTH). NATS and MQTT carry them in their
//! CONNECT ([`super::nats::connect_as`], [`super::mqtt::connect_as`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{resp, Proto};

/// The flags that give the credentials; the secrets come from files, never from the command
/// line, where every user of the machine can read them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthOpts {
    /// User to authenticate as: hubbub's AUTH (a broker with --users), Redis's ACL AUTH, the
    /// NATS user, the MQTT user name.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// File whose first line is the password (Redis: alone, it is `requirepass`'s).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// File whose first line is a NATS token (`auth_token`), instead of a user and password.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl AuthOpts {
    /// Reads the files and checks that `proto` can carry what they give
    /// ([`Credentials::check`]); the message names the flag.
    pub fn credentials(&self, proto: Proto) -> Result<Credentials, String> {
        let read = |flag: &str, path: &Option<PathBuf>| match path {
            Some(p) => first_line(p)
                .map(Some)
                .map_err(|e| format!("{flag} {}: {e}", p.display())),
            None => Ok(None),
        };
        let credentials = Credentials {
            user: self.user.clone(),
            password: read("--password-file", &self.password_file)?,
            token: read("--token-file", &self.token_file)?,
        };
        credentials.check(proto)?;
        Ok(credentials)
    }
}

/// A file's first line, without its line ending; an empty one is refused.
fn first_line(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => Err("holds nothing on its first line".into()),
    }
}

/// A user and password, or a token (NATS), or nothing. Shown by `Debug` without the secrets,
/// so that no log of the options carries them; sent to worker processes on their stdin, never
/// on a command line.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "…");
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .finish()
    }
}

impl Credentials {
    /// No credentials: what every connection presented before they existed.
    pub const NONE: Credentials = Credentials {
        user: None,
        password: None,
        token: None,
    };

    /// Whether there is nothing to present.
    pub fn is_none(&self) -> bool {
        self == &Self::NONE
    }

    /// Refuses what `proto` cannot carry, naming the flags: hubbub needs a user and a
    /// password together; Redis a password, with or without a user (ACL users or
    /// `requirepass`); NATS a user and a password together, or a token alone; MQTT a user,
    /// with or without a password. Only NATS has tokens.
    pub fn check(&self, proto: Proto) -> Result<(), String> {
        let (user, password, token) = (
            self.user.is_some(),
            self.password.is_some(),
            self.token.is_some(),
        );
        if token && proto != Proto::Nats {
            return Err(format!("--token-file: {proto} has no tokens (NATS has)"));
        }
        if token && (user || password) {
            return Err("--token-file goes alone, without --user or --password-file".into());
        }
        let both = "--user and --password-file go together";
        match proto {
            Proto::Hubbub | Proto::Nats if user != password => Err(format!("{proto}: {both}")),
            Proto::Redis if user && !password => Err(format!("redis: --user needs {both}")),
            Proto::Mqtt if password && !user => {
                Err("mqtt: --password-file needs --user (MQTT sends no password alone)".into())
            }
            _ => Ok(()),
        }
    }

    /// The command that authenticates a connection in `proto`, sent first, whose reply is
    /// awaited: hubbub `{"command":"AUTH",...}`, Redis `AUTH user password` (the ACL form of
    /// Redis 6) or `AUTH password`. `None` for NATS and MQTT, and without credentials.
    pub fn auth_command(&self, proto: Proto) -> Option<Vec<u8>> {
        let password = self.password.as_deref()?;
        match proto {
            Proto::Hubbub => {
                let user = self.user.as_deref()?;
                Some(::hubbub::protocol::encode::auth_command(user, password).to_vec())
            }
            Proto::Redis => {
                let mut out = Vec::new();
                resp::encode_auth(&mut out, self.user.as_deref(), password);
                Some(out)
            }
            Proto::Nats | Proto::Mqtt => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: Option<&str>, password: Option<&str>, token: Option<&str>) -> Credentials {
        Credentials {
            user: user.map(Into::into),
            password: password.map(Into::into),
            token: token.map(Into::into),
        }
    }

    #[test]
    fn each_protocol_takes_what_it_can_carry() {
        let up = creds(Some("u"), Some("p"), None);
        for proto in Proto::ALL {
            assert_eq!(up.check(proto), Ok(()), "{proto}");
            assert_eq!(Credentials::NONE.check(proto), Ok(()), "{proto}");
        }
        let password_only = creds(None, Some("p"), None);
        assert_eq!(password_only.check(Proto::Redis), Ok(()));
        assert!(password_only.check(Proto::Hubbub).is_err());
        assert!(password_only.check(Proto::Mqtt).is_err());
        let user_only = creds(Some("u"), None, None);
        assert_eq!(user_only.check(Proto::Mqtt), Ok(()));
        assert!(user_only.check(Proto::Redis).is_err());
        let token = creds(None, None, Some("t"));
        assert_eq!(token.check(Proto::Nats), Ok(()));
        assert_eq!(
            token.check(Proto::Redis),
            Err("--token-file: redis has no tokens (NATS has)".into())
        );
        assert!(creds(Some("u"), Some("p"), Some("t"))
            .check(Proto::Nats)
            .is_err());
    }

    #[test]
    fn auth_commands_and_no_secrets_in_debug() {
        let up = creds(Some("u"), Some("p w"), None);
        assert_eq!(
            up.auth_command(Proto::Hubbub).unwrap(),
            b"{\"command\":\"AUTH\",\"args\":{\"user\":\"u\",\"password\":\"p w\"}}\n"
        );
        assert_eq!(
            up.auth_command(Proto::Redis).unwrap(),
            b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$3\r\np w\r\n"
        );
        assert_eq!(
            creds(None, Some("pw"), None)
                .auth_command(Proto::Redis)
                .unwrap(),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
        assert_eq!(up.auth_command(Proto::Nats), None);
        assert_eq!(Credentials::NONE.auth_command(Proto::Hubbub), None);
        let shown = format!("{:?}", creds(Some("u"), Some("hunter2"), Some("t0k3n")));
        assert!(
            !shown.contains("hunter2") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }

    #[test]
    fn nats_and_mqtt_carry_them_in_connect() {
        use super::super::{mqtt, nats};
        let nats_up =
            String::from_utf8(nats::connect_as("id", &creds(Some("u"), Some("p"), None))).unwrap();
        assert!(
            nats_up.contains("\"user\":\"u\"") && nats_up.contains("\"pass\":\"p\""),
            "{nats_up}"
        );
        assert!(!nats_up.contains("auth_token"), "{nats_up}");
        let nats_token =
            String::from_utf8(nats::connect_as("id", &creds(None, None, Some("t")))).unwrap();
        assert!(nats_token.contains("\"auth_token\":\"t\""), "{nats_token}");
        assert_eq!(
            nats::connect("id"),
            nats::connect_as("id", &Credentials::NONE)
        );
        assert!(!String::from_utf8(nats::connect("id"))
            .unwrap()
            .contains("\"user\""));

        let mqtt_up = mqtt::connect_as("id", &creds(Some("u"), Some("pw"), None));
        let mut want = vec![0x10, 10 + 4 + 3 + 4];
        want.extend_from_slice(b"\0\x04MQTT\x04");
        want.push(0b1100_0010);
        want.extend_from_slice(b"\0\0\0\x02id\0\x01u\0\x02pw");
        assert_eq!(mqtt_up, want);
        let mqtt_user = mqtt::connect_as("id", &creds(Some("u"), None, None));
        assert_eq!(mqtt_user[9], 0b1000_0010);
        assert_eq!(mqtt::connect("id")[9], 0b0000_0010);
    }
}
