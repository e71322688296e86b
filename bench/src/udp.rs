//! UDP load: `udp ADDR --clients N --window W --size B --seconds S` keeps W datagrams of B bytes
//! in flight from each of N sockets (closed loop; a datagram with no reply within 200 ms counts
//! as lost and is replaced) and prints one JSON line: sent, received, lost, wrong (a reply
//! carrying another client's tag), datagrams_per_s (replies per second).
//! `udp-echo ADDR` is the backend: it sends every datagram back to its sender.

use crate::args::Args;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const LOST_AFTER: Duration = Duration::from_millis(200);

struct Client {
    socket: UdpSocket,
    in_flight: usize,
    last_reply: Instant,
}

pub fn run(args: &Args) -> Result<(), String> {
    let clients: usize = args.get("clients", 64)?;
    let window: usize = args.get("window", 1)?;
    let size: usize = args.get("size", 64)?;
    let seconds: f64 = args.get("seconds", 5.0)?;
    let size = size.max(8);
    let mut all = Vec::with_capacity(clients);
    for _ in 0..clients {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        socket.connect(args.addr).map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        all.push(Client { socket, in_flight: 0, last_reply: Instant::now() });
    }
    let mut payloads: Vec<Vec<u8>> = (0..clients)
        .map(|i| {
            let mut p = vec![0x5a; size];
            p[..8].copy_from_slice(&(i as u64).to_le_bytes());
            p
        })
        .collect();
    let mut polls: Vec<libc::pollfd> = all
        .iter()
        .map(|c| libc::pollfd { fd: c.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 })
        .collect();
    let (mut sent, mut received, mut lost, mut wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65_536];
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        for (i, c) in all.iter_mut().enumerate() {
            if c.in_flight > 0 && now.duration_since(c.last_reply) > LOST_AFTER {
                lost += c.in_flight as u64;
                c.in_flight = 0;
            }
            while c.in_flight < window {
                match c.socket.send(&payloads[i]) {
                    Ok(_) => {
                        if c.in_flight == 0 {
                            c.last_reply = now;
                        }
                        c.in_flight += 1;
                        sent += 1;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // An ICMP error from an earlier datagram: that one is lost, go on.
                    Err(_) => break,
                }
            }
        }
        // SAFETY: `polls` is a valid array of pollfd for the duration of the call.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 10) };
        if ready <= 0 {
            continue;
        }
        for (i, p) in polls.iter_mut().enumerate() {
            if p.revents == 0 {
                continue;
            }
            p.revents = 0;
            let c = &mut all[i];
            loop {
                match c.socket.recv(&mut buf) {
                    Ok(n) => {
                        if n != size || buf[..8] != payloads[i][..8] {
                            wrong += 1;
                        }
                        received += 1;
                        c.in_flight = c.in_flight.saturating_sub(1);
                        c.last_reply = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    payloads.clear();
    println!(
        "{{\"sent\": {sent}, \"received\": {received}, \"lost\": {lost}, \"wrong\": {wrong}, \"datagrams_per_s\": {:.1}}}",
        received as f64 / elapsed
    );
    Ok(())
}

/// Sends every datagram back to where it came from, until killed.
pub fn echo(args: &Args) -> Result<(), String> {
    let socket = UdpSocket::bind(args.addr).map_err(|e| e.to_string())?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        let _ = socket.send_to(&buf[..n], from);
    }
}
