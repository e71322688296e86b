//! Plain `http` requests through an HTTP proxy as Go's client sends them: to the proxy itself,
//! naming the whole URL in the request line (absolute form) and carrying the proxy's
//! credentials as `Proxy-Authorization`. ureq speaks to an HTTP proxy only through `CONNECT`
//! tunnels, which proxies commonly allow to port 443 alone (Squid's default rules).
//!
//! The resolver sends the connection to the proxy's address (`Renamed`); this connector wraps
//! it in a transport that rewrites the request's head on its way out. A connection carries one
//! request (`is_open` says no), so the head is always the first bytes written.

use std::io;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, Either};
use ureq::unversioned::transport::{NextTimeout, Transport};

/// Wraps `http` connections (made to the proxy) in [`Forwarded`]; passes others on.
#[derive(Debug)]
pub struct ForwardConnector {
    /// `Proxy-Authorization`'s value, when the proxy's URL carries credentials.
    pub authorization: Option<String>,
}

impl<In: Transport> Connector<In> for ForwardConnector {
    type Out = Either<In, Forwarded<In>>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else { return Ok(None) };
        let authority = details.uri.authority().filter(|_| details.uri.scheme_str() == Some("http"));
        let Some(authority) = authority else { return Ok(Some(Either::A(inner))) };
        Ok(Some(Either::B(Forwarded {
            inner,
            origin: format!("http://{authority}"),
            authorization: self.authorization.clone(),
            head_sent: false,
        })))
    }
}

/// A connection to the proxy carrying one request for `origin`.
#[derive(Debug)]
pub struct Forwarded<In> {
    inner: In,
    /// `http://host[:port]`, as the URL names it, put before the request's path.
    origin: String,
    authorization: Option<String>,
    head_sent: bool,
}

impl<In: Transport> Transport for Forwarded<In> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if self.head_sent {
            return self.inner.transmit_output(amount, timeout);
        }
        self.head_sent = true;
        let output = self.inner.buffers().output();
        let head = absolute_form(&output[..amount], &self.origin, self.authorization.as_deref())
            .filter(|head| head.len() <= output.len())
            .ok_or_else(|| io::Error::other("request line too long to send through the proxy"))?;
        output[..head.len()].copy_from_slice(&head);
        self.inner.transmit_output(head.len(), timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        false
    }
}

/// The start of a request (`METHOD /path HTTP/1.1\r\n…`) with its target made absolute
/// (`METHOD http://host/path HTTP/1.1`) and, given one, a `Proxy-Authorization` line after the
/// request line; `None` unless the request line, in origin form, is whole in `head`.
fn absolute_form(head: &[u8], origin: &str, authorization: Option<&str>) -> Option<Vec<u8>> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let target = head[..line_end].iter().position(|&b| b == b' ')? + 1;
    if head.get(target) != Some(&b'/') {
        return None;
    }
    let mut out = Vec::with_capacity(head.len() + origin.len() + 64);
    out.extend_from_slice(&head[..target]);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&head[target..line_end + 2]);
    if let Some(value) = authorization {
        out.extend_from_slice(format!("Proxy-Authorization: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(&head[line_end + 2..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::absolute_form;

    #[test]
    fn the_target_names_the_whole_url_and_the_proxy_gets_its_credentials() {
        let head = b"GET /v1/kv/k?raw HTTP/1.1\r\nhost: c.test:8500\r\n\r\n";
        let out = absolute_form(head, "http://c.test:8500", Some("Basic bGI6cHc=")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET http://c.test:8500/v1/kv/k?raw HTTP/1.1\r\nProxy-Authorization: Basic bGI6cHc=\r\n\
             host: c.test:8500\r\n\r\n"
        );
        let out = absolute_form(head, "http://c.test:8500", None).unwrap();
        assert!(out.starts_with(b"GET http://c.test:8500/v1/kv/k?raw HTTP/1.1\r\nhost:"));
    }

    #[test]
    fn a_head_without_a_whole_origin_form_request_line_is_refused() {
        assert_eq!(absolute_form(b"GET /a HTTP/1.1", "http://h", None), None);
        assert_eq!(absolute_form(b"GET http://h/a HTTP/1.1\r\n\r\n", "http://h", None), None);
        assert_eq!(absolute_form(b"\r\n", "http://h", None), None);
        assert_eq!(absolute_form(b"", "http://h", None), None);
    }
}
