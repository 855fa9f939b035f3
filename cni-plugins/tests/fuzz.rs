//! The fuzz bodies of `keel_cni::fuzz` on stable, without libFuzzer: each target's corpus
//! (`cni-plugins/fuzz/corpus/<target>/`) and a few thousand inputs derived from it by a seeded
//! pseudo-random mutator (byte flips, insertions, deletions, splices, and JSON-aware changes
//! that swap a value for one of another type or an edge case). Any panic fails the test.
//!
//! FUZZ_ITERATIONS (default 3000) sets the number of mutations per target; FUZZ_SEED picks
//! another sequence (the failing input is printed, to be saved into the corpus).

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

/// Values that trip parsers: wrong types, bounds, odd strings.
fn edge_value(rng: &mut Rng) -> Value {
    let edges = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(4094),
        json!(4095),
        json!(65536),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5),
        json!(""),
        json!("0.3.0"),
        json!("1.1.0"),
        json!("9.9.9"),
        json!("10.0.0.1/33"),
        json!("fd00::1/64"),
        json!("::"),
        json!("a/b"),
        json!("\u{0}"),
        json!("é".repeat(40)),
        json!([]),
        json!([{}]),
        json!({}),
        json!({"id": 1}),
        json!({"minID": 9, "maxID": 2}),
    ];
    edges[rng.below(edges.len())].clone()
}

/// Replaces, inserts or removes one node somewhere in `v`.
fn mutate_json(v: &mut Value, rng: &mut Rng, depth: usize) {
    match v {
        Value::Object(m) if !m.is_empty() && depth < 8 && rng.below(4) != 0 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            match rng.below(6) {
                0 => {
                    m.remove(key);
                }
                1 => {
                    m.insert(key.clone(), edge_value(rng));
                }
                _ => {
                    if let Some(child) = m.get_mut(key) {
                        mutate_json(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 8 && rng.below(4) != 0 => {
            let i = rng.below(a.len());
            match rng.below(5) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => mutate_json(&mut a[i], rng, depth + 1),
            }
        }
        Value::Object(m) if rng.below(2) == 0 => {
            let keys = [
                "cniVersion",
                "name",
                "type",
                "plugins",
                "prevResult",
                "ipam",
                "vlan",
                "vlanTrunk",
                "runtimeConfig",
                "ips",
                "routes",
                "interfaces",
                "code",
            ];
            m.insert(keys[rng.below(keys.len())].to_string(), edge_value(rng));
        }
        other => *other = edge_value(rng),
    }
}

fn mutate_bytes(data: &mut Vec<u8>, rng: &mut Rng) {
    let n = 1 + rng.below(4);
    for _ in 0..n {
        match rng.below(4) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(data.len() + 1);
                let alphabet = b"{}[]\",:0-9aeE.\\u";
                let b = alphabet[rng.below(alphabet.len())];
                data.insert(i, b);
            }
            2 if !data.is_empty() => {
                let i = rng.below(data.len());
                let len = 1 + rng.below((data.len() - i).min(16));
                data.drain(i..i + len);
            }
            _ if !data.is_empty() => {
                let i = rng.below(data.len());
                data.truncate(i);
            }
            _ => data.push(b'{'),
        }
    }
}

/// One derived input: JSON-aware most of the time, raw bytes otherwise, sometimes spliced.
fn derive(seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    match rng.below(5) {
        0 => {
            let mut d = seed.clone();
            mutate_bytes(&mut d, rng);
            d
        }
        1 => {
            let other = &seeds[rng.below(seeds.len())];
            let (a, b) = (rng.below(seed.len() + 1), rng.below(other.len() + 1));
            let mut d = seed[..a].to_vec();
            d.extend_from_slice(&other[b..]);
            d
        }
        _ => {
            let mut v: Value = serde_json::from_slice(seed).unwrap_or(Value::Object(Map::new()));
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, rng, 0);
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
    }
}

fn drive(target: &str, body: fn(&[u8])) {
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x6b65_656c_636e_6931);
    let seeds = corpus(target);
    let mut rng = Rng(seed | 1);
    let run = |input: &[u8]| {
        let r = std::panic::catch_unwind(|| body(input));
        if r.is_err() {
            panic!(
                "{target}: the body panicked on {:?}",
                String::from_utf8_lossy(input)
            );
        }
    };
    for s in &seeds {
        run(s);
    }
    for _ in 0..iterations {
        run(&derive(&seeds, &mut rng));
    }
}

#[test]
fn network_config() {
    drive("network_config", keel_cni::fuzz::network_config);
}

#[test]
fn plugin_config() {
    drive("plugin_config", keel_cni::fuzz::plugin_config);
}

#[test]
fn result() {
    drive("result", keel_cni::fuzz::result);
}

/// The bodies check what they claim: a result that does not read back would be reported.
#[test]
fn the_bodies_accept_their_corpus() {
    for f in corpus("result") {
        let v: Value = serde_json::from_slice(&f).expect("corpus is JSON");
        if v.get("code").is_none() {
            assert!(keel_cni::spec::CniResult::from_value(&v).is_ok(), "{v}");
        }
    }
    for f in corpus("network_config") {
        assert!(
            keel_cni::spec::NetworkConfigList::from_conf_bytes(&f).is_ok(),
            "{}",
            String::from_utf8_lossy(&f)
        );
    }
}
