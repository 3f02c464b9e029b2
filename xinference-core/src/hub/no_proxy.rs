//! `NO_PROXY` / `no_proxy`: the hosts that the hub client reaches directly even when a
//! `*_PROXY` variable names a proxy (ureq 2 reads the proxy variables but not this one).
//! Entries are separated by commas (or spaces); `*` matches every host; an entry matches its
//! host and every subdomain (`example.com` and `.example.com` both match `example.com` and
//! `cdn.example.com`); an entry with a port (`host:8080`) matches only that port. Matching is
//! on host names and literal addresses, case-insensitive; CIDR ranges are not read.

/// The parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    /// `(host, port)`, lowercase, without a leading dot or IPv6 brackets.
    entries: Vec<(String, Option<u16>)>,
}

impl NoProxy {
    /// `NO_PROXY` and `no_proxy` together (either may be set).
    pub fn from_env() -> NoProxy {
        let list: Vec<String> = ["NO_PROXY", "no_proxy"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .collect();
        NoProxy::parse(&list.join(","))
    }

    /// A list as `NO_PROXY` spells it.
    pub fn parse(list: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in list.split([',', ' ', '\t']).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            let entry = entry.to_ascii_lowercase();
            let (host, port) = split_port(&entry);
            let host = host.trim_start_matches("*.").trim_start_matches('.');
            if !host.is_empty() {
                no_proxy.entries.push((host.to_owned(), port));
            }
        }
        no_proxy
    }

    /// Whether a request to `url` goes around the proxy.
    pub fn bypasses(&self, url: &str) -> bool {
        if self.all {
            return true;
        }
        let Some((host, port)) = host_and_port(url) else {
            return false;
        };
        self.entries.iter().any(|(entry, entry_port)| {
            entry_port.is_none_or(|p| Some(p) == port)
                && (host == *entry
                    || host
                        .strip_suffix(entry.as_str())
                        .is_some_and(|rest| rest.ends_with('.')))
        })
    }
}

/// `host:port` -> (`host`, port); `[::1]:80` -> (`::1`, 80); a bare IPv6 address has no port.
fn split_port(text: &str) -> (&str, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (text, None),
        },
        _ => (text, None),
    }
}

/// The lowercase host of `url` and its port (explicit, else the scheme's).
fn host_and_port(url: &str) -> Option<(String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_port(authority);
    let port = port.or(match scheme.to_ascii_lowercase().as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::NoProxy;

    #[test]
    fn hosts_suffixes_ports_and_star() {
        let n = NoProxy::parse("localhost, .internal.example ,hf.co:8443,[::1], 10.0.0.7");
        assert!(n.bypasses("http://localhost:9997/api"));
        assert!(n.bypasses("https://internal.example/x"));
        assert!(n.bypasses("https://cdn.internal.example/x"));
        assert!(!n.bypasses("https://notinternal.example/x"));
        assert!(n.bypasses("https://hf.co:8443/x"));
        assert!(!n.bypasses("https://hf.co/x"), "another port");
        assert!(n.bypasses("http://[::1]:8000/x"));
        assert!(n.bypasses("http://user:pw@10.0.0.7/x"));
        assert!(!n.bypasses("https://huggingface.co/api/models"));
        assert!(NoProxy::parse("example.com").bypasses("https://A.Example.COM/x"));
        assert!(NoProxy::parse("*.example.com").bypasses("https://a.example.com/x"));
        let all = NoProxy::parse("*");
        assert!(all.bypasses("https://huggingface.co/x"));
        assert!(!NoProxy::parse("").bypasses("https://huggingface.co/x"));
        assert!(!NoProxy::parse(" , ").bypasses("http://localhost/"));
    }
}
