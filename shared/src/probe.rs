//! The binaries' `healthcheck` subcommand: one plain HTTP/1.0 `GET` to the process's own
//! listener, for a container's HEALTHCHECK in an image that has no curl. Status 200 is
//! healthy; anything else, or no answer within the timeout, is not.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The address to probe for a listener configured as `listen`: a wildcard host
/// (`0.0.0.0`, `[::]`) is probed on loopback.
pub fn local_target(listen: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = listen
        .to_socket_addrs()
        .map_err(|e| format!("{listen}: {e}"))?
        .next()
        .ok_or_else(|| format!("{listen}: no address"))?;
    Ok(match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        a => a,
    })
}

/// `GET path` on `addr`; `Ok` only for a 200 answer within `timeout`.
pub fn http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("{addr}: {e}"))?;
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match conn.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            // A reset after the status line arrived still leaves the status to judge.
            Err(_) if got > 0 => break,
            Err(e) => return Err(format!("{addr}: {e}")),
        }
    }
    let status = String::from_utf8_lossy(&head[..got]);
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code == "200" {
        Ok(())
    } else {
        Err(format!("GET {path} on {addr} answered {:?}", status.lines().next().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_probed_on_loopback_and_a_specific_one_as_is() {
        assert_eq!(local_target("0.0.0.0:9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(local_target("[::]:8080").unwrap(), "[::1]:8080".parse().unwrap());
        assert_eq!(local_target("10.1.2.3:8080").unwrap(), "10.1.2.3:8080".parse().unwrap());
        assert!(local_target("not an address").is_err());
    }

    #[test]
    fn a_closed_port_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(http_ok(port, "/healthz", Duration::from_millis(500)).is_err());
    }

    #[test]
    fn only_a_200_answer_is_healthy() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let serve = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\n\r\n"] {
                let (mut c, _) = listener.accept().unwrap();
                // Read the whole request first: closing with unread bytes resets the
                // connection, which could reach the client before the answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 256];
                while !request.ends_with(b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                c.write_all(answer.as_bytes()).unwrap();
            }
        });
        assert!(http_ok(addr, "/healthz", Duration::from_secs(2)).is_ok());
        assert!(http_ok(addr, "/healthz", Duration::from_secs(2)).is_err());
        serve.join().unwrap();
    }
}
