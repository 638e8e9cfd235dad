//! How many lines per second the protocol core handles: client lines through
//! the decoder and the command parser, server lines through the encoder and
//! the client-side parser. Run with `cargo bench --bench protocol`.
//!
//! The inputs are what a busy chat looks like: mostly chat lines of 20 to 80
//! bytes, some commands, a few long lines; server lines are mostly `MSG`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use natter::decoder::{Frame, LineDecoder, DEFAULT_MAX_LINE};
use natter::protocol::{parse_command, ServerLine, Timestamp};

/// Client lines as people and programs type them, without line ends.
fn client_lines() -> Vec<String> {
    let chat = [
        "hello everyone",
        "did anyone see the release notes for 0.4? the scroll-back fix is great",
        "lol",
        "I'll be back after lunch, ping me if the build breaks again",
        "MSG /shrug is how you shrug",
        "MSG #lobby has anyone tried the telnet mode yet?",
        "/nick robert",
        "NICK alice2",
        "PING 1764150000",
        "/users",
        "USERS #lobby",
        "HELP",
        "QUIT see you tomorrow",
        "ok 👍 sounds good — let's ship it",
    ];
    (0..1000)
        .map(|i| match i % 50 {
            // A long paste now and then.
            0 => "a rather long pasted line of text that goes on ".repeat(12),
            _ => chat[i % chat.len()].to_owned(),
        })
        .collect()
}

/// The bytes a mix of nc (LF), telnet (CRLF) and other clients send.
fn client_stream(lines: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(if i % 3 == 0 { b"\n" } else { b"\r\n" });
    }
    bytes
}

/// Server lines as a client receives them: mostly chat.
fn server_lines() -> Vec<ServerLine> {
    let time = Timestamp::from_unix(1_795_000_000).unwrap_or_else(Timestamp::now);
    let room = || "#lobby".to_owned();
    (0..1000u64)
        .map(|i| match i % 20 {
            0 => ServerLine::Join {
                time,
                room: room(),
                nick: format!("user{i}"),
            },
            1 => ServerLine::Quit {
                time,
                nick: format!("user{i}"),
                reason: "lunch".into(),
            },
            2 => ServerLine::Users {
                room: room(),
                nicks: (0..20).map(|n| format!("user{n}")).collect(),
            },
            3 => ServerLine::Pong(i.to_string()),
            _ => ServerLine::Msg {
                time,
                id: 1_000_000 + i,
                room: room(),
                nick: format!("user{}", i % 37),
                text: "did anyone see the release notes? the scroll-back fix is great".into(),
            },
        })
        .collect()
}

fn protocol(c: &mut Criterion) {
    let lines = client_lines();
    let stream = client_stream(&lines);
    let server = server_lines();
    let encoded: Vec<String> = server
        .iter()
        .map(|line| line.to_line().trim_end().to_owned())
        .collect();

    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_command", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = black_box(parse_command(black_box(line)));
            }
        })
    });
    group.bench_function("LineDecoder (one 4 KiB read at a time)", |b| {
        b.iter(|| {
            let mut decoder = LineDecoder::new(DEFAULT_MAX_LINE);
            let mut frames = 0;
            for chunk in stream.chunks(4096) {
                let mut rest = chunk;
                while let Some(frame) = decoder.decode(&mut rest) {
                    if let Frame::Line(line) = frame {
                        black_box(line);
                    }
                    frames += 1;
                }
            }
            frames
        })
    });
    group.bench_function("LineDecoder + parse_command", |b| {
        b.iter(|| {
            let mut decoder = LineDecoder::new(DEFAULT_MAX_LINE);
            for chunk in stream.chunks(4096) {
                let mut rest = chunk;
                while let Some(frame) = decoder.decode(&mut rest) {
                    if let Frame::Line(line) = frame {
                        let _ = black_box(parse_command(&line));
                    }
                }
            }
        })
    });

    group.throughput(Throughput::Elements(server.len() as u64));
    group.bench_function("ServerLine::encode", |b| {
        let mut out = Vec::with_capacity(128 * 1024);
        b.iter(|| {
            out.clear();
            for line in &server {
                black_box(line).encode(&mut out);
            }
            out.len()
        })
    });
    group.bench_function("ServerLine::parse", |b| {
        b.iter(|| {
            for line in &encoded {
                let _ = black_box(ServerLine::parse(black_box(line)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
