//! Records, through Redis's `MONITOR`, which keys each script call touches that it did not
//! declare in KEYS (issue 16: a strict engine or a slot being resharded sees only those).
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A `MONITOR` connection to one server, its lines kept until `finish`.
pub struct KeyMonitor {
    stream: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl KeyMonitor {
    /// Starts monitoring the server on `port` of 127.0.0.1; returns once Redis said `OK`.
    pub fn start(port: u16) -> Self {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect for MONITOR");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        stream.write_all(b"MONITOR\r\n").expect("send MONITOR");
        let mut reader = BufReader::new(stream.try_clone().expect("clone the MONITOR socket"));
        let mut ok = String::new();
        reader.read_line(&mut ok).expect("MONITOR's answer");
        assert_eq!(ok.trim_end(), "+OK", "MONITOR refused");
        stream.set_read_timeout(None).expect("no read timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(text) = line.strip_prefix('+') {
                    sink.lock().unwrap().push(text.to_owned());
                }
            }
        });
        Self {
            stream,
            lines,
            reader: Some(reader),
        }
    }

    /// Stops monitoring and hands back every command line it saw, as Redis wrote it.
    pub fn finish_lines(mut self) -> Vec<String> {
        self.stop();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }

    fn stop(&mut self) {
        // let the last lines arrive before the socket closes
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Stops monitoring and reports, per script, the shapes of the keys it touched
    /// without declaring them (`job:*`, `rq:*`, `queued`: the part after the hash tag,
    /// with what follows its first `:` starred).
    pub fn finish(mut self) -> Undeclared {
        self.stop();
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        undeclared(&lines)
    }
}

/// Per script (its function name less the library's `<name>_<version>_`, or
/// `evalsha:<sha>`), the shapes of the keys it touched undeclared; and how many times
/// each script was called.
#[derive(Debug, Default)]
pub struct Undeclared {
    pub by_script: BTreeMap<String, BTreeSet<String>>,
    pub calls: BTreeMap<String, usize>,
}

/// Reads MONITOR lines: a script call's own line comes before the commands it runs
/// (`[<db> lua]`), and nothing runs between them.
fn undeclared(lines: &[String]) -> Undeclared {
    let mut out = Undeclared::default();
    let mut current: Option<(String, BTreeSet<String>)> = None;
    for line in lines {
        let Some((client, args)) = parse_line(line) else { continue };
        if client == "lua" {
            let Some((script, declared)) = &current else { continue };
            for key in keys_of(&args) {
                if !declared.contains(&key) {
                    out.by_script.entry(script.clone()).or_default().insert(shape(&key));
                }
            }
            continue;
        }
        current = None;
        let cmd = args.first().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
        if matches!(cmd.as_str(), "FCALL" | "FCALL_RO" | "EVALSHA" | "EVALSHA_RO" | "EVAL" | "EVAL_RO") && args.len() >= 3 {
            let name = match cmd.as_str() {
                "FCALL" | "FCALL_RO" => args[1].splitn(3, '_').last().unwrap_or_default().to_owned(),
                "EVAL" | "EVAL_RO" => "eval".to_owned(),
                _ => format!("evalsha:{}", &args[1][..args[1].len().min(8)]),
            };
            let n: usize = args[2].parse().unwrap_or(0);
            let declared = args.iter().skip(3).take(n).cloned().collect();
            *out.calls.entry(name.clone()).or_default() += 1;
            current = Some((name, declared));
        }
    }
    out
}

/// The keys a command names (the commands the scripts use; an unknown one fails the
/// test so the table grows with them).
fn keys_of(args: &[String]) -> Vec<String> {
    let cmd = args.first().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
    let rest = &args[1.min(args.len())..];
    match cmd.as_str() {
        "TIME" | "PING" | "INFO" => vec![],
        "DEL" | "UNLINK" | "EXISTS" | "MGET" | "TOUCH" => rest.to_vec(),
        "MSET" | "MSETNX" => rest.iter().step_by(2).cloned().collect(),
        "HSET" | "HGET" | "HMGET" | "HDEL" | "HINCRBY" | "HINCRBYFLOAT" | "HEXISTS" | "HGETALL" | "HLEN" | "HKEYS" | "HVALS" | "HSETNX"
        | "HRANDFIELD" | "HSCAN" | "ZADD" | "ZREM" | "ZRANGE" | "ZREVRANGE" | "ZRANGEBYSCORE" | "ZSCORE" | "ZMSCORE" | "ZCARD"
        | "ZCOUNT" | "ZPOPMIN" | "ZPOPMAX" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYRANK" | "ZRANK" | "ZREVRANK" | "ZINCRBY" | "ZSCAN"
        | "SADD" | "SREM" | "SCARD" | "SMEMBERS" | "SISMEMBER" | "SRANDMEMBER" | "SPOP" | "SSCAN" | "GET" | "SET" | "SETNX" | "GETDEL"
        | "INCR" | "INCRBY" | "DECR" | "DECRBY" | "EXPIRE" | "PEXPIRE" | "PEXPIREAT" | "TTL" | "PTTL" | "PERSIST" | "TYPE" | "LPUSH"
        | "RPUSH" | "LPOP" | "RPOP" | "LLEN" | "LRANGE" | "LTRIM" | "LINDEX" | "LREM" => rest.first().cloned().into_iter().collect(),
        other => panic!("key_monitor: no key table entry for {other} (scripts use it: add it)"),
    }
}

/// A key's shape: the part after its hash tag, with what follows its first `:` starred.
fn shape(key: &str) -> String {
    let tail = key.split_once("}:").map(|(_, t)| t).unwrap_or(key);
    match tail.split_once(':') {
        Some((head, _)) => format!("{head}:*"),
        None => tail.to_owned(),
    }
}

/// A MONITOR line `<time> [<db> <client>] "arg" "arg" ...`: the client (`lua` for a
/// script's commands) and the unescaped arguments.
fn parse_line(line: &str) -> Option<(String, Vec<String>)> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let client = line[open + 1..close].split_whitespace().nth(1)?.to_owned();
    let mut args = Vec::new();
    let mut chars = line[close + 1..].chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut bytes = Vec::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => bytes.push(b'\n'),
                    'r' => bytes.push(b'\r'),
                    't' => bytes.push(b'\t'),
                    'a' => bytes.push(7),
                    'b' => bytes.push(8),
                    'x' => {
                        let hex: String = [chars.next()?, chars.next()?].iter().collect();
                        bytes.push(u8::from_str_radix(&hex, 16).ok()?);
                    }
                    c => {
                        let mut b = [0; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                },
                c => {
                    let mut b = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        args.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Some((client, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scripts_undeclared_keys_are_reported_by_shape() {
        let lines = [
            r#"1.0 [0 127.0.0.1:1] "FCALL" "drover_0a1b_start" "2" "d:{cleanup}:slot" "d:{cleanup}:job:a" "d:{cleanup}:" "a""#,
            r#"1.1 [0 lua] "HGET" "d:{cleanup}:job:a" "ls""#,
            r#"1.2 [0 lua] "ZREM" "d:{cleanup}:unstarted" "a""#,
            r#"1.3 [0 127.0.0.1:2] "GET" "d:{cleanup}:job:b""#,
            r#"1.4 [0 lua] "GET" "not:attributed""#,
            r#"1.5 [0 127.0.0.1:1] "FCALL" "drover_0a1b_fetch" "1" "d:{cleanup}:slot" "p \"q\"""#,
            r#"1.6 [0 lua] "MSET" "d:{cleanup}:a" "1" "d:{cleanup}:b" "2""#,
        ]
        .map(String::from);
        let u = undeclared(&lines);
        assert_eq!(u.calls.values().sum::<usize>(), 2);
        let got: Vec<(String, Vec<String>)> = u.by_script.into_iter().map(|(s, k)| (s, k.into_iter().collect())).collect();
        assert_eq!(
            got,
            vec![
                ("fetch".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
                ("start".to_owned(), vec!["unstarted".to_owned()]),
            ]
        );
    }

    #[test]
    fn escaped_arguments_are_read_back() {
        let (client, args) = parse_line(r#"1.0 [0 lua] "SET" "k\x41" "a \"b\" \\ c""#).unwrap();
        assert_eq!(client, "lua");
        assert_eq!(args, vec!["SET", "kA", r#"a "b" \ c"#]);
    }
}
