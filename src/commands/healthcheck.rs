//! `commune-ioc healthcheck`: exit 0 when a running backend answers
//! /healthz (for Docker's HEALTHCHECK, which has no curl in the image).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// GET /healthz with a plain HTTP/1.0 request; Ok when it answers 200.
pub fn run(addr: &str) -> Result<()> {
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
