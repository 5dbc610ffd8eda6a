//! Real `brainmesh` processes on 127.0.0.1 with ephemeral ports: mesh formation, roster
//! agreement, capacity, liveness, and restart with the same identity.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(40);

fn start_mesh(root: &std::path::Path, roles: &[&str], env: &[(&str, &str)]) -> Vec<Proc> {
    let mut procs: Vec<Proc> = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let dir = root.join(format!("peer{i}"));
        init(&dir, role);
        let boot = procs.first().map(|p| p.addr.clone());
        procs.push(start(&dir, boot.as_deref(), env));
    }
    procs
}

/// Waits until every process reports exactly `ids` in its roster, all with `status`.
fn wait_for_rosters(procs: &[&Proc], ids: &[String], status: &str) -> bool {
    let mut want: Vec<String> = ids.to_vec();
    want.sort();
    wait_for(T, || {
        procs
            .iter()
            .all(|p| {
                p.status().is_some_and(|s| {
                    let r = roster(&s, 1);
                    r.iter().map(|m| m.0.clone()).collect::<Vec<_>>() == want && r.iter().all(|m| m.1 == status)
                })
            })
            .then_some(())
    })
    .is_some()
}

#[test]
fn five_peers_join_through_one_bootstrap_and_every_roster_holds_every_registration() {
    let root = tempfile::tempdir().unwrap();
    let procs = start_mesh(root.path(), &["gateway", "miner", "miner", "validator", "miner"], &[]);
    let ids: Vec<String> = procs.iter().map(|p| p.peer_id.clone()).collect();
    let refs: Vec<&Proc> = procs.iter().collect();
    assert!(
        wait_for_rosters(&refs, &ids, "online"),
        "rosters did not converge: {:#?}",
        procs.iter().map(|p| p.status()).collect::<Vec<_>>()
    );
    for p in &procs {
        let s = p.status().unwrap();
        assert_eq!(s["registration"], "admitted");
        // Everyone got to know everyone, not just the bootstrap peer.
        assert!(!s["connected_peers"].as_array().unwrap().is_empty());
        assert_eq!(s["counters"]["rejected_total"], 0, "honest mesh rejected something: {s}");
        // Registrations carry the X25519 seal key and are admitted everywhere.
        for m in s["roster"][0]["members"].as_array().unwrap() {
            assert_eq!(m["seal_key"].as_str().unwrap().len(), 64);
            assert_eq!(m["admitted"], true);
        }
        // The gauges follow on the next heartbeat.
        let want = "brainmesh_roster_members{brain=\"1\",role=\"miner\",status=\"online\"} 3";
        let url = format!("http://{}/metrics", p.http);
        assert!(wait_for(T, || get_text(&url).filter(|m| m.contains(want))).is_some(), "{:?}", get_text(&url));
    }
    // Far peers learn of each other through the roster, and connect through Kademlia.
    let last = procs.last().unwrap();
    assert!(wait_for(T, || (last.status()?["connected_peers"].as_array()?.len() >= 3).then_some(())).is_some());
}

#[test]
fn a_killed_peer_turns_offline_everywhere_and_restarts_with_the_same_peer_id_and_roster() {
    let root = tempfile::tempdir().unwrap();
    let mut procs = start_mesh(root.path(), &["miner", "miner", "validator", "miner", "gateway"], &[]);
    let ids: Vec<String> = procs.iter().map(|p| p.peer_id.clone()).collect();
    assert!(wait_for_rosters(&procs.iter().collect::<Vec<_>>(), &ids, "online"));

    let victim = 3;
    let victim_id = procs[victim].peer_id.clone();
    procs[victim].kill9();
    let others: Vec<&Proc> = procs.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, p)| p).collect();
    let offline_everywhere = wait_for(T, || {
        others
            .iter()
            .all(|p| p.status().is_some_and(|s| roster(&s, 1).iter().any(|m| m.0 == victim_id && m.1 == "offline")))
            .then_some(())
    });
    assert!(offline_everywhere.is_some(), "killed peer not marked offline everywhere");
    // The others stay online in each other's view.
    for p in &others {
        let s = p.status().unwrap();
        assert_eq!(roster(&s, 1).iter().filter(|m| m.1 == "online").count(), 4);
    }

    // Restart without any bootstrap: identity and roster come back from disk alone.
    let dir = procs[victim].dir.clone();
    let restarted = start(&dir, None, &[]);
    assert_eq!(restarted.peer_id, victim_id);
    let s = restarted.status().unwrap();
    let mut known: Vec<String> = roster(&s, 1).into_iter().map(|m| m.0).collect();
    known.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(known, want, "restarted peer lost its roster");
    assert_eq!(s["registration"], "admitted");
}

#[test]
fn brain_capacity_refuses_the_extra_miner_on_every_peer() {
    let root = tempfile::tempdir().unwrap();
    let env = [("BRAINMESH_BRAIN_POLICY_MAX_MINERS", "2")];
    let procs = start_mesh(root.path(), &["gateway", "miner", "miner", "miner"], &env);
    let late = procs[3].peer_id.clone();
    let agreed = wait_for(T, || {
        procs
            .iter()
            .all(|p| {
                p.status().is_some_and(|s| {
                    let r = roster(&s, 1);
                    r.len() == 4 && r.iter().all(|m| m.2 == (m.0 != late))
                })
            })
            .then_some(())
    });
    assert!(
        agreed.is_some(),
        "peers disagree on who is admitted: {:#?}",
        procs.iter().map(|p| p.status()).collect::<Vec<_>>()
    );
    let s = procs[3].status().unwrap();
    let reg = s["registration"].as_str().unwrap();
    assert!(reg.starts_with("refused: Brain 1 is full: 2 miners registered (capacity 2)"), "{reg}");
}

#[test]
fn init_writes_a_private_key_and_a_config_that_dump_config_reads_back_with_overrides() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("v");
    let out = init(&dir, "validator");
    assert!(out.contains("peer id:"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("identity.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second init keeps the key and refuses to clobber the config.
    let again =
        std::process::Command::new(BIN).args(["init", "--role", "validator", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let dump = std::process::Command::new(BIN)
        .args(["node", "--config"])
        .arg(dir.join("config.toml"))
        .args(["--dump-config", "--http", "127.0.0.1:7777"])
        .env("BRAINMESH_BRAIN_POLICY_MAX_VALIDATORS", "9")
        .env("BRAINMESH_NETWORK_BOOTSTRAP", "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2")
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let cfg: brainmesh::NodeConfig = toml::from_str(&String::from_utf8_lossy(&dump.stdout)).unwrap();
    assert_eq!(cfg.roles, vec![brainmesh_actors::protocols::gossip::Role::Validator]);
    assert_eq!(cfg.brain_policy.max_validators, 9);
    assert_eq!(cfg.network.bootstrap.len(), 2);
    assert_eq!(cfg.http.listen, "127.0.0.1:7777");
    assert_eq!(std::fs::canonicalize(&cfg.data_dir).unwrap(), std::fs::canonicalize(&dir).unwrap());

    // A bad override is a clear error naming the variable, not a panic.
    let bad = std::process::Command::new(BIN)
        .args(["node", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--dump-config")
        .env("BRAINMESH_BRAIN", "lots")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("BRAINMESH_BRAIN"));

    // `brainmesh status` talks to a running node.
    let p = start(&dir, None, &[]);
    let st = std::process::Command::new(BIN).args(["status", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["peer_id"], p.peer_id.as_str());
    assert_eq!(v["roles"][0], "validator");
}
