//! A larger echo proxy, sized like a real one (about 100 KB): `say(message)` summarises the
//! message in the guest (the words counted and ranked, the numbers in it parsed as floats with
//! their sum, mean and spread, all in fixed-point text), forwards the summary to the
//! provider's `say` method and returns the provider's answer. It exists so the cold-call
//! benchmark measures a proxy of the size the issue names, with ordinary Rust code in it
//! (hashing, sorting, float parsing and formatting) rather than padding.

#[allow(unsafe_code, reason = "the generated bindings and export glue are FFI")]
mod bindings {
    wit_bindgen::generate!({
        world: "courier:worlds/echo-proxy@0.1.0",
        path: ["../../wit/proxy", "../../wit/echo", "../../wit/kv", "../../wit/patch", "../../wit/worlds"],
        generate_all,
    });

    use super::Proxy;
    export!(Proxy with_types_in self);
}

use bindings::courier::proxy::provider;
use bindings::exports::courier::echo::echo::Guest;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

struct Proxy;

/// What a message holds: its words by count, and the numbers in it.
#[derive(Default)]
struct Digest {
    words: HashMap<String, u32>,
    numbers: Vec<f64>,
}

impl Digest {
    fn of(message: &str) -> Self {
        let mut d = Digest::default();
        for token in message.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            let token = token.trim_matches(|c: char| c.is_ascii_punctuation() && c != '.');
            if token.is_empty() {
                continue;
            }
            match token.parse::<f64>() {
                Ok(n) if n.is_finite() => d.numbers.push(n),
                _ => *d.words.entry(token.to_lowercase()).or_default() += 1,
            }
        }
        d
    }

    /// The summary line: top words, then count, sum, mean and standard deviation.
    fn summary(&self) -> String {
        let mut ranked: Vec<(&String, &u32)> = self.words.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let mut out = String::new();
        let by_length: BTreeMap<usize, usize> =
            self.words.keys().fold(BTreeMap::new(), |mut m, w| {
                *m.entry(w.chars().count()).or_default() += 1;
                m
            });
        let _ = write!(out, "words={}", self.words.values().sum::<u32>());
        for (word, n) in ranked.iter().take(5) {
            let _ = write!(out, " {word}:{n}");
        }
        let _ = write!(out, " lengths=");
        for (len, n) in &by_length {
            let _ = write!(out, "{len}x{n},");
        }
        if !self.numbers.is_empty() {
            let n = self.numbers.len() as f64;
            let sum: f64 = self.numbers.iter().sum();
            let mean = sum / n;
            let var = self.numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            let _ = write!(
                out,
                " numbers={} sum={sum:.3} mean={mean:.3} sd={:.3}",
                self.numbers.len(),
                var.sqrt()
            );
        }
        out
    }
}

impl Guest for Proxy {
    fn say(message: String) -> Result<String, String> {
        let digest = Digest::of(&message);
        let forwarded = format!("{message} [{}]", digest.summary());
        let answer = provider::call("say", forwarded.as_bytes())?;
        String::from_utf8(answer).map_err(|_| "the provider answered with invalid UTF-8".to_owned())
    }
}
