//! End-to-end latency through the mesh against in-process generation, and the prefix cache.
//!
//! `cargo bench --bench mesh_latency` (or `make bench-mesh`). Everything runs in one process on
//! the same machine: real SmolLM2-135M weights, real libp2p sockets on 127.0.0.1.
//!
//! Part 1, routing overhead: one gateway and one miner (1 LibTorch thread). Each prompt is run
//! in-process (`Model::generate`, same tokens, same settings, same thread count) and through the
//! gateway's task service (distributor → sealed task over libp2p → miner → sealed chunks →
//! countersigned receipt), alternating so drift hits both alike. Reported: p50/p99 of total
//! latency and time to first token, and the mesh's overhead as a ratio.
//!
//! Part 2, prefix cache: a workload of prompts that share long system prompts (4 groups × 6
//! questions, interleaved) through a gateway and two miners, once with the miners' prefix KV
//! cache on and once with it off. Reported: hit rate (from the miners' metrics), prompt tokens
//! reused, mean/p50 time to first token and total latency, and the gain as a ratio.
//!
//! Knobs: BENCH_MESH_N (prompts in part 1, default 24), BENCH_MESH_TOKENS (max tokens, 24).

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use brainmesh::config::{loopback, NodeConfig};
use brainmesh::Node;
use brainmesh_actors::models::{ChatMessage as MChat, GenerateConfig, LoadOptions, Model};
use brainmesh_actors::protocols::gossip::Role;
use brainmesh_actors::task::{ChatMessage, Prompt, Sampling, TaskEvent, TaskService, TaskSpec};

const MODEL_ID: &str = "smollm2-135m-instruct";

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn smollm() -> PathBuf {
    let cache = std::env::var("BRAINMESH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"));
    cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn config(dir: &Path, role: Role, bootstrap: Vec<String>, prefix_tokens: usize) -> NodeConfig {
    let mut cfg = loopback(role, dir, bootstrap).expect("template");
    cfg.network.heartbeat_interval_ms = 500;
    cfg.network.offline_after_heartbeats = 20;
    cfg.miner.model = smollm();
    cfg.miner.threads = 1;
    cfg.miner.device = "cpu".into();
    cfg.miner.prefix_cache_tokens = prefix_tokens;
    cfg.log.filter = "warn".into();
    cfg
}

/// One measured answer.
#[derive(Debug, Clone, Copy)]
struct Timing {
    total: Duration,
    ttft: Duration,
    tokens: usize,
}

fn pct(xs: &[Duration], p: f64) -> Duration {
    let mut v = xs.to_vec();
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn mean(xs: &[Duration]) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.iter().sum::<Duration>() / xs.len() as u32
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One in-process job: chat messages (role, content), max tokens, where the timing goes.
type DirectJob = (Vec<(String, String)>, u32, tokio::sync::oneshot::Sender<Timing>);

/// In-process generation on its own thread (the model is not shared with the mesh's miner).
struct Direct {
    tx: std_mpsc::Sender<DirectJob>,
}

impl Direct {
    fn start(threads: usize) -> Direct {
        let (tx, rx) = std_mpsc::channel::<DirectJob>();
        std::thread::spawn(move || {
            let opts = LoadOptions { threads: Some(threads), ..Default::default() };
            let model = Model::load(smollm(), &opts, &mut |_| {}).expect("load SmolLM2");
            while let Ok((msgs, max_tokens, reply)) = rx.recv() {
                let msgs: Vec<MChat> = msgs.into_iter().map(|(r, c)| MChat::new(r, c)).collect();
                let t0 = Instant::now();
                let text = model.tokenizer.chat_template.render(&msgs).expect("chat template");
                let ids = model.tokenizer.encode(&text).expect("encode");
                let cfg = GenerateConfig::greedy(max_tokens as usize);
                let mut first = None;
                let g = model
                    .generate(&[ids], &cfg, &mut |_| {
                        first.get_or_insert_with(|| t0.elapsed());
                        true
                    })
                    .expect("generate")
                    .remove(0);
                let total = t0.elapsed();
                let _ = reply.send(Timing { total, ttft: first.unwrap_or(total), tokens: g.tokens.len() });
            }
        });
        Direct { tx }
    }

    async fn run(&self, msgs: &[(String, String)], max_tokens: u32) -> Timing {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send((msgs.to_vec(), max_tokens, reply)).expect("direct thread alive");
        rx.await.expect("direct answer")
    }
}

async fn through_mesh(tasks: &dyn TaskService, msgs: &[(String, String)], max_tokens: u32) -> Timing {
    let spec = TaskSpec {
        model: MODEL_ID.into(),
        account: "bench".into(),
        prompt: Prompt::Chat(msgs.iter().map(|(r, c)| ChatMessage { role: r.clone(), content: c.clone() }).collect()),
        sampling: Sampling { max_tokens, ..Default::default() },
    };
    let t0 = Instant::now();
    let mut rx = tasks.submit(spec).await.expect("submit");
    let mut first = None;
    let mut tokens = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            TaskEvent::Token { .. } | TaskEvent::Embeddings { .. } => {
                first.get_or_insert_with(|| t0.elapsed());
            }
            TaskEvent::Done { usage, .. } => {
                tokens = usage.completion_tokens as usize;
                break;
            }
            TaskEvent::Failed(e) => panic!("task failed: {e}"),
            TaskEvent::Started { .. } => {}
        }
    }
    let total = t0.elapsed();
    Timing { total, ttft: first.unwrap_or(total), tokens }
}

async fn wait_miners(tasks: &dyn TaskService, n: u32) {
    let end = Instant::now() + Duration::from_secs(120);
    while tasks.models().await.first().is_none_or(|m| m.miners < n) {
        assert!(Instant::now() < end, "miners never advertised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const QUESTIONS: [&str; 12] = [
    "What is the capital of France?",
    "Name three primary colours.",
    "What is 7 times 8?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "Give me a synonym for happy.",
    "What planet is known as the red planet?",
    "How many days are in a leap year?",
    "What is the largest ocean on Earth?",
    "Translate 'thank you' into Spanish.",
    "What gas do plants absorb from the air?",
    "What is the square root of 81?",
];

fn user(q: &str) -> Vec<(String, String)> {
    vec![("user".into(), q.into())]
}

async fn part1(root: &Path, n: usize, max_tokens: u32) {
    let gw = Node::start(config(&root.join("p1-gw"), Role::Gateway, vec![], 0)).await.expect("gateway");
    let miner =
        Node::start(config(&root.join("p1-m"), Role::Miner, vec![gw.listen_addrs[0].clone()], 0)).await.expect("miner");
    let tasks = gw.tasks.clone().expect("gateway tasks");
    wait_miners(&tasks, 1).await;
    let direct = Direct::start(1);
    // Warm both paths.
    direct.run(&user("Hello"), 4).await;
    through_mesh(&tasks, &user("Hello"), 4).await;
    let (mut d, mut m) = (Vec::new(), Vec::new());
    for i in 0..n {
        let q = user(QUESTIONS[i % QUESTIONS.len()]);
        // Alternate which goes first.
        if i % 2 == 0 {
            d.push(direct.run(&q, max_tokens).await);
            m.push(through_mesh(&tasks, &q, max_tokens).await);
        } else {
            m.push(through_mesh(&tasks, &q, max_tokens).await);
            d.push(direct.run(&q, max_tokens).await);
        }
        assert_eq!(d[i].tokens, m[i].tokens, "same prompt, same greedy settings, same number of tokens");
    }
    let dt: Vec<Duration> = d.iter().map(|t| t.total).collect();
    let mt: Vec<Duration> = m.iter().map(|t| t.total).collect();
    let df: Vec<Duration> = d.iter().map(|t| t.ttft).collect();
    let mf: Vec<Duration> = m.iter().map(|t| t.ttft).collect();
    let toks: usize = m.iter().map(|t| t.tokens).sum();
    println!("\n== routing overhead: gateway -> miner -> gateway on loopback vs in-process ({n} prompts, up to {max_tokens} tokens, {toks} tokens generated, 1 thread) ==");
    println!("{:<22} {:>12} {:>12} {:>12}", "", "in-process", "mesh", "mesh/in-proc");
    for (name, a, b) in [
        ("total p50 (ms)", pct(&dt, 0.5), pct(&mt, 0.5)),
        ("total p99 (ms)", pct(&dt, 0.99), pct(&mt, 0.99)),
        ("total mean (ms)", mean(&dt), mean(&mt)),
        ("first token p50 (ms)", pct(&df, 0.5), pct(&mf, 0.5)),
        ("first token p99 (ms)", pct(&df, 0.99), pct(&mf, 0.99)),
    ] {
        println!("{name:<22} {:>12.1} {:>12.1} {:>12.3}", ms(a), ms(b), ms(b) / ms(a).max(1e-9));
    }
    let per: Vec<f64> = d.iter().zip(&m).map(|(a, b)| ms(b.total) - ms(a.total)).collect();
    let mut sorted = per.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "paired overhead per request: median {:.1} ms ({:.1}% of in-process median); target <= 5% at p50 and p99",
        sorted[sorted.len() / 2],
        100.0 * sorted[sorted.len() / 2] / ms(pct(&dt, 0.5)).max(1e-9)
    );
    miner.shutdown().await;
    gw.shutdown().await;
}

async fn part2(root: &Path, tag: &str, prefix_tokens: usize, max_tokens: u32) -> (Vec<Timing>, u64, u64, u64) {
    let gw = Node::start(config(&root.join(format!("p2-{tag}-gw")), Role::Gateway, vec![], 0)).await.expect("gateway");
    let boot = gw.listen_addrs[0].clone();
    let mut miners = Vec::new();
    for i in 0..2 {
        let dir = root.join(format!("p2-{tag}-m{i}"));
        miners.push(Node::start(config(&dir, Role::Miner, vec![boot.clone()], prefix_tokens)).await.expect("miner"));
    }
    let tasks = gw.tasks.clone().expect("gateway tasks");
    wait_miners(&tasks, 2).await;
    let systems: Vec<String> = [
        "You are a patient geography teacher. Answer in one short sentence, name the country, and never use lists.",
        "You are a terse arithmetic assistant. Reply with the number only, and no explanation or units whatsoever.",
        "You are a friendly librarian who loves classic English literature and answers with a single sentence.",
        "You are a science tutor for twelve-year-olds; be accurate, kind and brief, and avoid technical words.",
    ]
    .iter()
    .map(|s| format!("{s} {}", "Keep every answer under twenty words. Do not repeat the question. ".repeat(4)))
    .collect();
    // Warm-up outside the measured set (not sharing any system prompt).
    through_mesh(&tasks, &user("Hello"), 2).await;
    let count = |miners: &[Node]| {
        miners.iter().fold((0, 0, 0), |(h, m, r), n| {
            (
                h + n.metrics.task_events("prefix_hit"),
                m + n.metrics.task_events("prefix_miss"),
                r + n.metrics.prefix_reused_tokens.get(),
            )
        })
    };
    let before = count(&miners);
    let mut out = Vec::new();
    for round in 0..6 {
        for (g, sys) in systems.iter().enumerate() {
            let q = QUESTIONS[(round * 4 + g) % QUESTIONS.len()];
            let msgs = vec![("system".to_string(), sys.clone()), ("user".to_string(), q.to_string())];
            out.push(through_mesh(&tasks, &msgs, max_tokens).await);
        }
    }
    let after = count(&miners);
    let (hits, misses, reused) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    for m in miners {
        m.shutdown().await;
    }
    gw.shutdown().await;
    (out, hits, misses, reused)
}

fn main() {
    // `cargo bench` passes `--bench`. `cargo test --all-targets` runs bench targets without it:
    // this bench takes minutes, so it only reports that it was built.
    if !std::env::args().any(|a| a == "--bench") {
        println!("mesh_latency: built; run it with `cargo bench --bench mesh_latency`");
        return;
    }
    let n = env_usize("BENCH_MESH_N", 24);
    let max_tokens = env_usize("BENCH_MESH_TOKENS", 24) as u32;
    let root = tempfile::tempdir().expect("temp dir");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("mesh_latency: SmolLM2-135M-Instruct Q4_1 GGUF, CPU, {cpus} cores available, greedy decoding");
    actix_rt::System::new().block_on(async {
        part1(root.path(), n, max_tokens).await;
        let (on, hits, misses, reused) = part2(root.path(), "on", 4096, 8).await;
        let (off, _, _, _) = part2(root.path(), "off", 0, 8).await;
        let f = |v: &[Timing]| v.iter().map(|t| t.ttft).collect::<Vec<_>>();
        let t = |v: &[Timing]| v.iter().map(|t| t.total).collect::<Vec<_>>();
        println!("\n== prefix cache: 4 shared system prompts x 6 questions, interleaved, through a gateway and 2 miners (prefix affinity on) ==");
        println!(
            "hit rate {:.0}% ({hits} hits / {} tasks), {reused} prompt tokens reused",
            100.0 * hits as f64 / (hits + misses).max(1) as f64,
            hits + misses
        );
        println!("{:<22} {:>12} {:>12} {:>12}", "", "cache off", "cache on", "off/on");
        for (name, a, b) in [
            ("first token mean (ms)", mean(&f(&off)), mean(&f(&on))),
            ("first token p50 (ms)", pct(&f(&off), 0.5), pct(&f(&on), 0.5)),
            ("total mean (ms)", mean(&t(&off)), mean(&t(&on))),
            ("total p50 (ms)", pct(&t(&off), 0.5), pct(&t(&on), 0.5)),
        ] {
            println!("{name:<22} {:>12.1} {:>12.1} {:>12.2}", ms(a), ms(b), ms(a) / ms(b).max(1e-9));
        }
    });
}
