use std::net::SocketAddr;

/// Path components of an HTTP URL considered for its resource names.
pub const MAX_PATH_COMPONENTS: usize = 10;
/// Bytes of an HTTP URL path considered for its resource names.
pub const MAX_PATH_BYTES: usize = 256;

/// Something access is asked for, as a list of resource names tried from the
/// most to the least specific until one has an ACL (see `aaa.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    names: Vec<String>,
}

impl Resource {
    /// A resource from explicit names, most specific first. `names` must not
    /// be empty.
    pub fn from_names(names: Vec<String>) -> Self {
        assert!(!names.is_empty(), "a resource needs at least one name");
        Resource { names }
    }

    /// The resource of an HTTP request to the listener bound on `local` for
    /// URL path `path`. For `/a/b/c` on `L`:
    /// `http_listener/L/a/b/c`, `http_listener/L/a/b`, `http_listener/L/a`,
    /// `http_listener/L`, `http_listener/*/a/b/c`, `http_listener/*/a/b`,
    /// `http_listener/*/a`, `http_listener`. Empty components are skipped;
    /// only the first [`MAX_PATH_BYTES`] bytes and [`MAX_PATH_COMPONENTS`]
    /// components count.
    pub fn http_listener(local: SocketAddr, path: &str) -> Self {
        let path = truncate_at_char_boundary(path, MAX_PATH_BYTES);
        let components: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .take(MAX_PATH_COMPONENTS)
            .collect();
        let mut names = Vec::with_capacity(2 * components.len() + 2);
        let local = format!("http_listener/{local}");
        push_prefixes(&mut names, &local, &components);
        names.push(local);
        push_prefixes(&mut names, "http_listener/*", &components);
        names.push("http_listener".to_owned());
        Resource { names }
    }

    /// The resource of a proxy `CONNECT` through the listener bound on
    /// `listener` to `host` (an IP address or a domain name) port `port`:
    /// `proxy_listener/L/destination/H:P`, `proxy_listener/L/destination/H`,
    /// `proxy_listener/*/destination/H:P`, `proxy_listener/*/destination/H`,
    /// `proxy_listener/*/destination`, `proxy_listener`. An IPv6 host is
    /// bracketed in `H:P` (`[::1]:25`) and bare in `H`.
    pub fn proxy_destination(listener: SocketAddr, host: &str, port: u16) -> Self {
        let host_port = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut names = Vec::with_capacity(6);
        for base in [
            format!("proxy_listener/{listener}"),
            "proxy_listener/*".to_owned(),
        ] {
            names.push(format!("{base}/destination/{host_port}"));
            names.push(format!("{base}/destination/{host}"));
        }
        names.push("proxy_listener/*/destination".to_owned());
        names.push("proxy_listener".to_owned());
        Resource { names }
    }

    /// The resource of a proxy `BIND` to source address `source` on the
    /// listener bound on `listener`: `proxy_listener/L/source/S`,
    /// `proxy_listener/*/source/S`, `proxy_listener/*/source`,
    /// `proxy_listener`.
    pub fn proxy_source(listener: SocketAddr, source: std::net::IpAddr) -> Self {
        Resource {
            names: vec![
                format!("proxy_listener/{listener}/source/{source}"),
                format!("proxy_listener/*/source/{source}"),
                "proxy_listener/*/source".to_owned(),
                "proxy_listener".to_owned(),
            ],
        }
    }

    /// Every name, most specific first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The most specific name: the resource as a person would name it.
    pub fn target(&self) -> &str {
        &self.names[0]
    }
}

/// Push `base/c1/.../cn`, then `base/c1/.../c(n-1)`, ..., `base/c1`.
fn push_prefixes(names: &mut Vec<String>, base: &str, components: &[&str]) {
    for len in (1..=components.len()).rev() {
        names.push(format!("{base}/{}", components[..len].join("/")));
    }
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:8000".parse().unwrap()
    }

    #[test]
    fn expands_as_the_spec_lists() {
        let resource = Resource::http_listener(local(), "/a/b/c");
        assert_eq!(
            resource.names(),
            [
                "http_listener/127.0.0.1:8000/a/b/c",
                "http_listener/127.0.0.1:8000/a/b",
                "http_listener/127.0.0.1:8000/a",
                "http_listener/127.0.0.1:8000",
                "http_listener/*/a/b/c",
                "http_listener/*/a/b",
                "http_listener/*/a",
                "http_listener",
            ]
        );
        assert_eq!(resource.target(), "http_listener/127.0.0.1:8000/a/b/c");
    }

    #[test]
    fn root_and_empty_components() {
        let root = Resource::http_listener(local(), "/");
        assert_eq!(
            root.names(),
            ["http_listener/127.0.0.1:8000", "http_listener"]
        );
        let doubled = Resource::http_listener(local(), "//metrics/");
        assert_eq!(doubled.names()[0], "http_listener/127.0.0.1:8000/metrics");
        assert_eq!(doubled.names()[2], "http_listener/*/metrics");
    }

    #[test]
    fn ipv6_listener() {
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        let resource = Resource::http_listener(v6, "/metrics");
        assert_eq!(resource.target(), "http_listener/[::1]:9000/metrics");
    }

    #[test]
    fn proxy_resources_as_the_spec_lists() {
        let listener: SocketAddr = "127.0.0.1:1080".parse().unwrap();
        let connect = Resource::proxy_destination(listener, "10.0.0.5", 25);
        assert_eq!(
            connect.names(),
            [
                "proxy_listener/127.0.0.1:1080/destination/10.0.0.5:25",
                "proxy_listener/127.0.0.1:1080/destination/10.0.0.5",
                "proxy_listener/*/destination/10.0.0.5:25",
                "proxy_listener/*/destination/10.0.0.5",
                "proxy_listener/*/destination",
                "proxy_listener",
            ]
        );
        let v6 = Resource::proxy_destination(listener, "::1", 25);
        assert_eq!(
            v6.names()[0],
            "proxy_listener/127.0.0.1:1080/destination/[::1]:25"
        );
        assert_eq!(
            v6.names()[1],
            "proxy_listener/127.0.0.1:1080/destination/::1"
        );
        let bind = Resource::proxy_source(listener, "127.0.0.2".parse().unwrap());
        assert_eq!(
            bind.names(),
            [
                "proxy_listener/127.0.0.1:1080/source/127.0.0.2",
                "proxy_listener/*/source/127.0.0.2",
                "proxy_listener/*/source",
                "proxy_listener",
            ]
        );
    }

    #[test]
    fn limits_components_and_bytes() {
        let deep = "/1/2/3/4/5/6/7/8/9/10/11/12";
        let resource = Resource::http_listener(local(), deep);
        assert_eq!(
            resource.target(),
            "http_listener/127.0.0.1:8000/1/2/3/4/5/6/7/8/9/10"
        );
        assert_eq!(resource.names().len(), 2 * MAX_PATH_COMPONENTS + 2);

        let long = format!("/{}/x", "é".repeat(200));
        let resource = Resource::http_listener(local(), &long);
        // The 256-byte cut falls inside the first component, which is kept
        // whole up to a character boundary; the `x` after it is not seen.
        assert_eq!(resource.names().len(), 4);
        assert!(!resource.target().ends_with("/x"));
    }
}
