//! The session state machine, driven directly: frames in, frames out, a
//! fake hub and a fake clock.

use std::sync::atomic::AtomicBool;

use chrono::TimeZone;
use serde_json::{json, Value};

use super::*;
use crate::auth::{Role, Via};
use std::collections::HashSet;

use crate::live::keys::{find_family, key_info, Catalog, Family};
use crate::live::projections::{devices, feed, indicators};

/// What the fake hub knows: indicator ids and scopes.
struct Known {
    indicators: HashSet<String>,
    scopes: HashSet<String>,
}

impl Catalog for Known {
    fn family(&self, name: &str) -> Option<&'static Family> {
        find_family([&indicators::FAMILY, &devices::FAMILY, &feed::FAMILY], name)
    }
    fn knows(&self, family: &Family, index: usize, segment: &str) -> bool {
        match (family.name, index) {
            ("indicator", 0) => self.indicators.contains(segment),
            ("indicator", 1) => ["today", "24h", "month"].contains(&segment),
            ("indicator", 2) | ("feed", 0) => self.scopes.contains(segment),
            ("device", 0) => ["camera", "speaker", "sensor"].contains(&segment),
            _ => false,
        }
    }
    fn scopes(&self) -> &HashSet<String> {
        &self.scopes
    }
}

const GOOD: &str = "good-token-0123456789";

/// A hub with fixed items and history.
struct Fake {
    limits: Live,
    metrics: Metrics,
    known: Known,
    seq: u64,
    current: Vec<Item>,
    history: Vec<Arc<Step>>,
}

impl Source for Fake {
    fn epoch(&self) -> &str {
        "e1"
    }
    fn seq(&self) -> u64 {
        self.seq
    }
    fn limits(&self) -> &Live {
        &self.limits
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn patterns(
        &self,
        keys: &[String],
        villages: Option<&[String]>,
    ) -> Result<Vec<Pattern>, String> {
        if let Some(bad) = villages
            .into_iter()
            .flatten()
            .find(|v| !self.known.scopes.contains(*v))
        {
            return Err(format!("Khóa không tồn tại: thôn/bản `{bad}` không có."));
        }
        keys.iter()
            .map(|k| Pattern::parse(k, &self.known))
            .collect()
    }
    fn snapshot(&self, wanted: &mut dyn FnMut(&KeyInfo) -> bool) -> (u64, Vec<Item>) {
        let items = self
            .current
            .iter()
            .filter(|i| wanted(&i.key))
            .cloned()
            .collect();
        (self.seq, items)
    }
    fn resume(&self, epoch: &str, since: u64) -> Option<(u64, Vec<Arc<Step>>)> {
        if epoch != "e1" || since > self.seq {
            return None;
        }
        let first = self.history.first().map_or(self.seq + 1, |s| s.seq);
        if first > since + 1 && since != self.seq {
            return None;
        }
        let steps = self
            .history
            .iter()
            .filter(|s| s.seq > since)
            .cloned()
            .collect();
        Some((self.seq, steps))
    }
}

/// Accepts `GOOD` until revoked.
#[derive(Debug, Default)]
struct Auth {
    revoked: AtomicBool,
}

impl Authenticator for Auth {
    fn authenticate(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        match token {
            None => Err(AuthError::Missing),
            Some(GOOD) if !self.revoked.load(Ordering::Relaxed) => Ok(Principal {
                name: "kiosk:hall".into(),
                role: Role::Viewer,
                via: Via::Kiosk,
                token_id: Some(1),
            }),
            Some(_) => Err(AuthError::Invalid),
        }
    }
}

/// An indicator key `indicator:{id}:today:{scope}` with the dense `id`.
fn key(n: u32, ind: &str, scope: &str) -> Arc<KeyInfo> {
    Arc::new(key_info(
        n,
        &indicators::FAMILY,
        vec![ind.into(), "today".into(), scope.into()],
        scope.into(),
    ))
}

fn item(k: &Arc<KeyInfo>, value: f64) -> Item {
    let json = json!({"key": k.name, "scope": k.scope, "updated_at": null,
        "value": {"value": value, "pad": "x".repeat(200)}});
    Item::whole_from_json(Arc::clone(k), json.to_string().into())
}

fn at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 3, 0, 0).unwrap()
}

struct World {
    fake: Arc<Fake>,
    auth: Arc<Auth>,
    slots: Arc<Slots>,
    keys: Vec<Arc<KeyInfo>>,
    t0: Instant,
}

fn world_with(f: impl FnOnce(&mut Live)) -> World {
    let mut limits = Live::default();
    f(&mut limits);
    let keys = vec![
        key(0, "received", "commune"),
        key(1, "received", "tan-binh"),
        key(2, "ratio", "commune"),
    ];
    let known = Known {
        indicators: ["received", "ratio"].map(String::from).into(),
        scopes: ["commune", "tan-binh"].map(String::from).into(),
    };
    let history = vec![
        Arc::new(Step::new(8, at(), vec![item(&keys[0], 1.0)])),
        Arc::new(Step::new(9, at(), vec![item(&keys[2], 50.0)])),
        Arc::new(Step::new(
            10,
            at(),
            vec![item(&keys[0], 2.0), item(&keys[1], 2.0)],
        )),
    ];
    let metrics = Metrics::new();
    let slots = Slots::new(&limits, &metrics);
    let fake = Fake {
        limits,
        metrics,
        known,
        seq: 10,
        current: keys.iter().map(|k| item(k, 2.0)).collect(),
        history,
    };
    World {
        fake: Arc::new(fake),
        auth: Arc::new(Auth::default()),
        slots,
        keys,
        t0: Instant::now(),
    }
}

fn world() -> World {
    world_with(|_| {})
}

impl World {
    fn session(&self, token: Option<&str>) -> Session<Fake> {
        let principal = self.auth.authenticate(token);
        Session::new(
            Arc::clone(&self.fake),
            Arc::clone(&self.auth) as Arc<dyn Authenticator>,
            Arc::clone(&self.slots),
            principal,
            token.map(String::from),
            self.t0,
        )
    }

    /// A session past its hello.
    fn open(&self) -> Session<Fake> {
        let mut s = self.session(Some(GOOD));
        assert_eq!(drain(&mut s), vec![Out::Attach]);
        s.on_attached(10, self.t0);
        let hello = frames(&mut s);
        assert_eq!(hello[0]["type"], "hello");
        s
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
}

fn drain(s: &mut Session<Fake>) -> Vec<Out> {
    std::iter::from_fn(|| s.poll()).collect()
}

fn json_of(o: &Out) -> Value {
    match o {
        Out::Text(t) => serde_json::from_str(t.as_str()).expect("frame is JSON"),
        other => panic!("not a text frame: {other:?}"),
    }
}

/// Every output, which must all be text frames.
fn frames(s: &mut Session<Fake>) -> Vec<Value> {
    drain(s).iter().map(json_of).collect()
}

fn send(s: &mut Session<Fake>, v: Value, now: Instant) -> Vec<Out> {
    s.on_frame(Incoming::Text(&v.to_string()), now);
    drain(s)
}

fn sub(id: &str, keys: &[&str]) -> Value {
    json!({"type": "subscribe", "id": id, "keys": keys})
}

fn keys_of(frame: &Value) -> Vec<String> {
    frame["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect()
}

fn bytes(outs: &[Out]) -> usize {
    outs.iter()
        .map(|o| match o {
            Out::Text(t) => t.len(),
            _ => 0,
        })
        .sum()
}

// --- authentication and slots ---

#[test]
fn a_token_in_the_handshake_attaches_then_says_hello() {
    let w = world();
    let mut s = w.session(Some(GOOD));
    assert_eq!(drain(&mut s), vec![Out::Attach]);
    assert_eq!(s.slot(), Some(SlotKind::Open));
    s.on_attached(10, w.t0);
    let f = frames(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["type"], "hello");
    assert_eq!(f[0]["epoch"], "e1");
    assert_eq!(f[0]["seq"], 10);
    assert_eq!(f[0]["limits"]["commands_per_second"], 20);
    assert_eq!(f[0]["limits"]["snapshot_bytes_per_second"], 128 * 1024);
}

#[test]
fn an_invalid_handshake_token_is_refused_without_a_slot() {
    let w = world();
    let mut s = w.session(Some("wrong"));
    let out = drain(&mut s);
    assert_eq!(json_of(&out[0])["code"], "unauthorized");
    assert_eq!(out[1], Out::Close(CloseWhy::Unauthorized));
    assert_eq!(CloseWhy::Unauthorized.code(), 1008);
    assert_eq!(s.slot(), None);
    assert!(s.closed());
}

#[test]
fn an_unavailable_store_closes_with_try_again() {
    #[derive(Debug)]
    struct Down;
    impl Authenticator for Down {
        fn authenticate(&self, _: Option<&str>) -> Result<Principal, AuthError> {
            Err(AuthError::Unavailable)
        }
    }
    let w = world();
    let mut s = Session::new(
        Arc::clone(&w.fake),
        Arc::new(Down),
        Arc::clone(&w.slots),
        Err(AuthError::Unavailable),
        Some("t".into()),
        w.t0,
    );
    let out = drain(&mut s);
    assert_eq!(json_of(&out[0])["code"], "unavailable");
    assert_eq!(out[1], Out::Close(CloseWhy::TryAgain));
    assert_eq!(CloseWhy::TryAgain.code(), 1013);
}

#[test]
fn without_a_token_the_session_waits_for_auth_in_the_waiting_budget() {
    let w = world();
    let mut s = w.session(None);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.slot(), Some(SlotKind::Waiting));
    assert_eq!(w.slots.used(SlotKind::Waiting), 1);
    assert_eq!(w.slots.used(SlotKind::Open), 0);
    // Pings do not authenticate nor end the wait.
    s.on_frame(Incoming::Control, w.at(10));
    assert!(drain(&mut s).is_empty());
    let out = send(&mut s, json!({"type": "auth", "token": GOOD}), w.at(20));
    assert_eq!(out, vec![Out::Attach]);
    assert_eq!(s.slot(), Some(SlotKind::Open));
    assert_eq!(w.slots.used(SlotKind::Waiting), 0);
    assert_eq!(w.slots.used(SlotKind::Open), 1);
    s.on_attached(10, w.at(20));
    assert_eq!(frames(&mut s)[0]["type"], "hello");
}

#[test]
fn the_auth_deadline_closes_a_silent_socket() {
    let w = world_with(|l| l.auth_timeout_s = 3);
    let mut s = w.session(None);
    assert_eq!(s.next_wake(), w.at(3000));
    s.on_tick(w.at(2999));
    assert!(drain(&mut s).is_empty());
    s.on_tick(w.at(3000));
    let out = drain(&mut s);
    let e = json_of(&out[0]);
    assert_eq!(e["code"], "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("gửi lệnh auth"));
    assert_eq!(out[1], Out::Close(CloseWhy::Unauthorized));
}

#[test]
fn a_first_frame_other_than_auth_is_refused() {
    let w = world();
    let mut s = w.session(None);
    let out = send(&mut s, json!({"type": "ping"}), w.at(1));
    let e = json_of(&out[0]);
    assert_eq!(e["code"], "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("lệnh đầu tiên"));
    assert_eq!(out[1], Out::Close(CloseWhy::Unauthorized));

    let mut s = w.session(None);
    s.on_frame(Incoming::Binary, w.at(1));
    assert_eq!(drain(&mut s)[1], Out::Close(CloseWhy::Unauthorized));
}

#[test]
fn a_wrong_token_in_auth_is_refused() {
    let w = world();
    let mut s = w.session(None);
    let out = send(&mut s, json!({"type": "auth", "token": "nope"}), w.at(1));
    assert_eq!(json_of(&out[0])["code"], "unauthorized");
    assert_eq!(out[1], Out::Close(CloseWhy::Unauthorized));
    drop(s);
    assert_eq!(w.slots.used(SlotKind::Waiting), 0);
}

#[test]
fn waiting_sockets_never_take_authenticated_slots() {
    let w = world_with(|l| {
        l.max_connections = 2;
        l.max_unauthenticated = 3;
    });
    let waiting: Vec<_> = (0..3).map(|_| w.session(None)).collect();
    // A fourth socket without a token is refused at once.
    let mut extra = w.session(None);
    let out = drain(&mut extra);
    assert_eq!(json_of(&out[0])["code"], "too_many_connections");
    assert_eq!(out[1], Out::Close(CloseWhy::TryAgain));
    // Screens with a token still get in, up to max_connections.
    let mut a = w.session(Some(GOOD));
    let mut b = w.session(Some(GOOD));
    assert_eq!(drain(&mut a), vec![Out::Attach]);
    assert_eq!(drain(&mut b), vec![Out::Attach]);
    let mut c = w.session(Some(GOOD));
    assert_eq!(json_of(&drain(&mut c)[0])["code"], "too_many_connections");
    assert_eq!(w.fake.metrics.live_connections.get(), 2);
    assert_eq!(w.fake.metrics.live_unauthenticated.get(), 3);
    drop(waiting);
    assert_eq!(w.fake.metrics.live_unauthenticated.get(), 0);
}

#[test]
fn authenticating_when_the_open_budget_is_full_is_too_many_connections() {
    let w = world_with(|l| l.max_connections = 1);
    let _screen = w.open();
    let mut s = w.session(None);
    let out = send(&mut s, json!({"type": "auth", "token": GOOD}), w.at(1));
    assert_eq!(json_of(&out[0])["code"], "too_many_connections");
    assert_eq!(out[1], Out::Close(CloseWhy::TryAgain));
    assert_eq!(s.slot(), None, "the waiting slot is released");
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let w = world();
    let mut s = w.session(None);
    send(&mut s, json!({"type": "auth", "token": GOOD}), w.at(1));
    let s2 = w.session(Some(GOOD));
    for text in [
        format!("{s:?}"),
        format!("{s2:?}"),
        format!("{:?}", Secret(GOOD.into())),
    ] {
        assert!(!text.contains(GOOD), "{text}");
    }
}

// --- commands ---

#[test]
fn subscribe_answers_a_snapshot_of_matching_keys() {
    let w = world();
    let mut s = w.open();
    let f = frames(&mut s);
    assert!(f.is_empty());
    s.on_frame(
        Incoming::Text(&sub("a", &["indicator:received"]).to_string()),
        w.at(1),
    );
    let f = frames(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["type"], "snapshot");
    assert_eq!(f[0]["id"], "a");
    assert_eq!(f[0]["seq"], 10);
    assert_eq!(f[0]["resync"], false);
    assert_eq!(f[0]["page"], 1);
    assert_eq!(f[0]["pages"], 1);
    assert_eq!(
        keys_of(&f[0]),
        [
            "indicator:received:today:commune",
            "indicator:received:today:tan-binh"
        ]
    );
}

#[test]
fn a_village_filter_keeps_only_its_scopes() {
    let w = world();
    let mut s = w.open();
    let mut cmd = sub("a", &["indicator"]);
    cmd["villages"] = json!(["tan-binh"]);
    let out = send(&mut s, cmd, w.at(1));
    assert_eq!(
        keys_of(&json_of(&out[0])),
        ["indicator:received:today:tan-binh"]
    );
}

#[test]
fn snapshots_are_paged_under_the_frame_limit() {
    let w = world_with(|l| l.max_frame_bytes = 400);
    let mut s = w.open();
    let out = send(&mut s, sub("a", &["indicator"]), w.at(1));
    assert_eq!(out.len(), 3);
    for (k, o) in out.iter().enumerate() {
        let f = json_of(o);
        assert_eq!(f["page"], k + 1);
        assert_eq!(f["pages"], 3);
    }
}

#[test]
fn unknown_keys_and_villages_are_refused_with_the_subscription_id() {
    let w = world();
    let mut s = w.open();
    let out = send(&mut s, sub("x", &["indicator:khong_co"]), w.at(1));
    let e = json_of(&out[0]);
    assert_eq!(e["code"], "unknown_key");
    assert_eq!(e["id"], "x");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("Khóa không tồn tại"));
    let mut cmd = sub("x", &["indicator"]);
    cmd["villages"] = json!(["ban-z"]);
    assert_eq!(
        json_of(&send(&mut s, cmd, w.at(2))[0])["code"],
        "unknown_key"
    );
    // Nothing was subscribed: updates carry nothing.
    s.on_steps(&[Arc::new(Step::new(11, at(), vec![item(&w.keys[0], 3.0)]))]);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn subscription_ids_and_key_counts_are_checked() {
    let w = world();
    let mut s = w.open();
    assert_eq!(
        json_of(&send(&mut s, sub("", &["indicator"]), w.at(1))[0])["code"],
        "malformed"
    );
    let long = "i".repeat(65);
    assert_eq!(
        json_of(&send(&mut s, sub(&long, &["indicator"]), w.at(2))[0])["code"],
        "malformed"
    );
    assert_eq!(
        json_of(&send(&mut s, sub("a", &[]), w.at(3))[0])["code"],
        "malformed"
    );
    let many: Vec<&str> = vec!["indicator"; MAX_PATTERNS + 1];
    let e = json_of(&send(&mut s, sub("a", &many), w.at(4))[0]);
    assert_eq!(e["code"], "malformed");
    assert_eq!(e["id"], "a");
}

#[test]
fn too_many_subscriptions_but_replacing_one_is_fine() {
    let w = world_with(|l| l.max_subscriptions = 2);
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator:ratio"]), w.at(1));
    send(&mut s, sub("b", &["indicator:ratio"]), w.at(2));
    let e = json_of(&send(&mut s, sub("c", &["indicator:ratio"]), w.at(3))[0]);
    assert_eq!(e["code"], "too_many_subscriptions");
    assert_eq!(e["id"], "c");
    let f = json_of(&send(&mut s, sub("b", &["indicator:received"]), w.at(4))[0]);
    assert_eq!(f["type"], "snapshot");
}

#[test]
fn malformed_binary_and_oversized_commands_get_errors_and_the_session_stays() {
    let w = world_with(|l| l.max_command_bytes = 300);
    let mut s = w.open();
    s.on_frame(Incoming::Text("this is not json"), w.at(1));
    let e = &frames(&mut s)[0];
    assert_eq!(e["code"], "malformed");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("Khung không phải JSON"));
    assert_eq!(
        json_of(&send(&mut s, json!({"type": "dance"}), w.at(2))[0])["code"],
        "malformed"
    );
    s.on_frame(Incoming::Binary, w.at(3));
    assert_eq!(frames(&mut s)[0]["code"], "binary_not_supported");
    let big = json!({"type": "ping", "id": "x".repeat(400)});
    let e = json_of(&send(&mut s, big, w.at(4))[0]);
    assert_eq!(e["code"], "command_too_large");
    assert!(e["message"].as_str().unwrap().contains("tối đa 300 byte"));
    assert!(!s.closed());
    assert_eq!(w.fake.metrics.live_errors.get(), 4);
}

#[test]
fn ping_gets_a_pong_with_its_id_and_auth_after_hello_is_ignored() {
    let w = world();
    let mut s = w.open();
    let f = json_of(&send(&mut s, json!({"type": "ping", "id": 7}), w.at(1))[0]);
    assert_eq!(f["type"], "pong");
    assert_eq!(f["id"], 7);
    assert_eq!(f["seq"], 10);
    assert!(send(&mut s, json!({"type": "auth", "token": "x"}), w.at(2)).is_empty());
}

// --- rate limits ---

#[test]
fn commands_beyond_the_rate_are_refused_and_twenty_in_a_row_close() {
    let w = world_with(|l| l.commands_per_second = 5);
    let mut s = w.open();
    let ping = json!({"type": "ping"});
    for _ in 0..5 {
        assert_eq!(
            json_of(&send(&mut s, ping.clone(), w.at(0))[0])["type"],
            "pong"
        );
    }
    for k in 1..MAX_STRIKES {
        let out = send(&mut s, ping.clone(), w.at(0));
        assert_eq!(json_of(&out[0])["code"], "rate_limited", "strike {k}");
        assert_eq!(out.len(), 1);
    }
    let out = send(&mut s, ping.clone(), w.at(0));
    assert_eq!(json_of(&out[0])["code"], "rate_limited");
    assert_eq!(out[1], Out::Close(CloseWhy::RateLimited));
}

#[test]
fn the_command_bucket_refills_with_time_and_a_success_clears_strikes() {
    let w = world_with(|l| l.commands_per_second = 2);
    let mut s = w.open();
    let ping = json!({"type": "ping"});
    send(&mut s, ping.clone(), w.at(0));
    send(&mut s, ping.clone(), w.at(0));
    for _ in 0..(MAX_STRIKES - 1) {
        send(&mut s, ping.clone(), w.at(0));
    }
    // Half a second later one token is back: the strikes are forgiven.
    assert_eq!(
        json_of(&send(&mut s, ping.clone(), w.at(500))[0])["type"],
        "pong"
    );
    for _ in 0..(MAX_STRIKES - 1) {
        send(&mut s, ping.clone(), w.at(500));
    }
    assert!(!s.closed());
}

#[test]
fn snapshots_spend_a_byte_budget_and_a_spent_budget_refuses_subscribe() {
    let w = world_with(|l| {
        l.snapshot_burst_bytes = 2000;
        l.snapshot_bytes_per_second = 1000;
    });
    let mut s = w.open();
    let mut got = 0;
    let mut refused = None;
    for n in 0..10 {
        let out = send(&mut s, sub("a", &["indicator"]), w.at(n));
        let f = json_of(&out[0]);
        if f["type"] == "snapshot" {
            got += bytes(&out);
        } else {
            refused = Some(f);
            break;
        }
    }
    let e = refused.expect("the budget ran out");
    assert_eq!(e["code"], "snapshot_rate_limited");
    assert_eq!(e["id"], "a");
    let wait = e["retry_after_ms"].as_u64().unwrap();
    assert!(wait > 0 && wait < 2000, "{e}");
    // What went out is the burst plus at most one snapshot of debt.
    let one = 3 * 260;
    assert!(got <= 2000 + one + 100, "{got} bytes");
    // After the wait, one more snapshot.
    let later = w.at(10 + wait);
    assert_eq!(
        json_of(&send(&mut s, sub("a", &["indicator"]), later)[0])["type"],
        "snapshot"
    );
}

#[test]
fn a_refused_subscribe_keeps_the_old_subscription() {
    let w = world_with(|l| {
        l.snapshot_burst_bytes = 1024;
        l.snapshot_bytes_per_second = 1024;
    });
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator:ratio"]), w.at(0));
    send(&mut s, sub("b", &["indicator"]), w.at(0));
    let e = json_of(&send(&mut s, sub("a", &["indicator:received"]), w.at(0))[0]);
    assert_eq!(e["code"], "snapshot_rate_limited");
    s.on_steps(&[Arc::new(Step::new(11, at(), vec![item(&w.keys[2], 9.0)]))]);
    let f = frames(&mut s);
    assert_eq!(keys_of(&f[0]), ["indicator:ratio:today:commune"]);
}

#[test]
fn the_byte_budget_bounds_what_a_hammering_client_receives() {
    // 20 subscribes a second for 10 s (simulated), each answered by a
    // ~800-byte snapshot: without the budget 160 kB; with it, the burst
    // plus the rate times the time, plus one snapshot.
    let (burst, rate) = (2048.0, 1024.0);
    let w = world_with(|l| {
        l.snapshot_burst_bytes = 2048;
        l.snapshot_bytes_per_second = 1024;
        l.commands_per_second = 100;
    });
    let mut s = w.open();
    let mut received = 0;
    let mut one = 0;
    let mut refused = 0;
    for n in 0..200u64 {
        let now = w.at(n * 50);
        let out = send(&mut s, sub("a", &["indicator"]), now);
        let f = json_of(&out[0]);
        if f["type"] == "snapshot" {
            received += bytes(&out);
            one = bytes(&out);
        } else {
            assert_eq!(f["code"], "snapshot_rate_limited");
            refused += 1;
        }
        // A ping in between keeps the strikes at bay: this measures the
        // byte budget, not the close.
        send(&mut s, json!({"type": "ping"}), now);
    }
    assert!(!s.closed());
    let bound = burst + rate * 10.0 + one as f64;
    assert!((received as f64) <= bound, "{received} bytes > {bound}");
    assert!(received > 10_000, "the budget still serves: {received}");
    assert!(refused > 100, "{refused}");
}

#[test]
fn twenty_refused_subscribes_in_a_row_close() {
    let w = world_with(|l| {
        l.snapshot_burst_bytes = 1024;
        l.commands_per_second = 1000;
    });
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator"]), w.at(0));
    let mut closed = false;
    for _ in 0..MAX_STRIKES {
        let out = send(&mut s, sub("a", &["indicator"]), w.at(0));
        closed |= out.contains(&Out::Close(CloseWhy::RateLimited));
    }
    assert!(closed);
}

// --- resume, updates, resync ---

#[test]
fn resume_sends_exactly_the_missed_matching_steps_then_joins() {
    let w = world();
    let mut s = w.open();
    let mut cmd = sub("r", &["indicator:received"]);
    cmd["resume"] = json!({"epoch": "e1", "seq": 7});
    let f: Vec<Value> = send(&mut s, cmd, w.at(1)).iter().map(json_of).collect();
    assert_eq!(
        f[0],
        json!({"type": "resumed", "id": "r", "from": 7, "seq": 10})
    );
    // Steps 8 and 10 carry matching keys, 9 does not.
    let seqs: Vec<u64> = f[1..].iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [8, 10]);
    assert_eq!(f[1]["type"], "update");
    assert_eq!(keys_of(&f[2]).len(), 2);
    // Then live updates.
    s.on_steps(&[Arc::new(Step::new(11, at(), vec![item(&w.keys[1], 5.0)]))]);
    assert_eq!(frames(&mut s)[0]["seq"], 11);
}

#[test]
fn a_long_resume_is_produced_a_step_at_a_time() {
    let w = world();
    let mut s = w.open();
    let mut cmd = sub("r", &["indicator"]);
    cmd["resume"] = json!({"epoch": "e1", "seq": 7});
    s.on_frame(Incoming::Text(&cmd.to_string()), w.at(1));
    // The queue holds the head and the first step only; poll makes more.
    assert_eq!(s.out.len(), 2);
    assert_eq!(drain(&mut s).len(), 4);
}

#[test]
fn resume_from_another_epoch_or_too_old_is_a_resync_snapshot() {
    let w = world();
    let mut s = w.open();
    for resume in [
        json!({"epoch": "e0", "seq": 9}),
        json!({"epoch": "e1", "seq": 3}),
    ] {
        let mut cmd = sub("r", &["indicator:ratio"]);
        cmd["resume"] = resume;
        let f = json_of(&send(&mut s, cmd, w.at(1))[0]);
        assert_eq!(f["type"], "snapshot");
        assert_eq!(f["resync"], true);
    }
    assert_eq!(w.fake.metrics.live_resyncs.get(), 2);
}

#[test]
fn pending_steps_merge_by_key_the_latest_winning() {
    let w = world();
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator"]), w.at(1));
    let k = &w.keys;
    s.on_steps(&[
        Arc::new(Step::new(
            11,
            at(),
            vec![item(&k[0], 3.0), item(&k[2], 1.0)],
        )),
        Arc::new(Step::new(12, at(), vec![item(&k[0], 4.0)])),
    ]);
    let f = frames(&mut s);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["seq"], 12);
    let items = f[0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["value"]["value"], 4.0);
}

#[test]
fn steps_already_in_the_snapshot_are_not_sent_again() {
    let w = world();
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator"]), w.at(1));
    // The snapshot was at seq 10: a step 10 arriving late is skipped.
    s.on_steps(&[Arc::new(Step::new(10, at(), vec![item(&w.keys[0], 3.0)]))]);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn equal_subscriptions_share_one_update_frame() {
    let w = world();
    let mut a = w.open();
    let mut b = w.open();
    let mut c = w.open();
    send(&mut a, sub("x", &["indicator:received"]), w.at(1));
    send(&mut b, sub("y", &["indicator:received"]), w.at(1));
    send(&mut c, sub("x", &["indicator:ratio"]), w.at(1));
    let step = Arc::new(Step::new(
        11,
        at(),
        vec![item(&w.keys[0], 3.0), item(&w.keys[2], 3.0)],
    ));
    for s in [&mut a, &mut b, &mut c] {
        s.on_steps(std::slice::from_ref(&step));
    }
    let (fa, fb, fc) = (drain(&mut a), drain(&mut b), drain(&mut c));
    assert_eq!(fa, fb);
    assert_eq!(keys_of(&json_of(&fc[0])), ["indicator:ratio:today:commune"]);
    assert_eq!(
        step.frames.lock().len(),
        2,
        "one serialization per signature"
    );
}

#[test]
fn unsubscribe_stops_the_updates() {
    let w = world();
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator"]), w.at(1));
    assert!(send(&mut s, json!({"type": "unsubscribe", "id": "a"}), w.at(2)).is_empty());
    s.on_steps(&[Arc::new(Step::new(11, at(), vec![item(&w.keys[0], 3.0)]))]);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_lagged_connection_gets_resync_snapshots_free_of_charge() {
    let w = world_with(|l| {
        l.snapshot_burst_bytes = 1024;
        l.snapshot_bytes_per_second = 1024;
    });
    let mut s = w.open();
    send(&mut s, sub("a", &["indicator:ratio"]), w.at(0));
    send(&mut s, sub("b", &["indicator"]), w.at(0));
    s.on_lagged();
    let f = frames(&mut s);
    assert_eq!(f.len(), 2);
    assert!(f
        .iter()
        .all(|f| f["type"] == "snapshot" && f["resync"] == true));
    assert_eq!(w.fake.metrics.live_resyncs.get(), 1 + 1);
}

// --- heartbeats, close ---

#[test]
fn heartbeats_ping_and_report_the_newest_seq() {
    let w = world_with(|l| l.heartbeat_s = 2);
    let mut s = w.open();
    assert_eq!(s.next_wake(), w.at(2000));
    s.on_tick(w.at(1999));
    assert!(drain(&mut s).is_empty());
    s.on_frame(Incoming::Control, w.at(1500));
    s.on_tick(w.at(2000));
    let out = drain(&mut s);
    assert_eq!(out[0], Out::Ping);
    let beat = json_of(&out[1]);
    assert_eq!(beat["type"], "heartbeat");
    assert_eq!(beat["seq"], 10);
    assert_eq!(s.next_wake(), w.at(4000));
}

#[test]
fn a_peer_silent_for_three_heartbeats_is_closed() {
    let w = world_with(|l| l.heartbeat_s = 1);
    let mut s = w.open();
    for t in [1000, 2000, 3000] {
        s.on_tick(w.at(t));
        assert_eq!(drain(&mut s)[0], Out::Ping);
    }
    s.on_tick(w.at(4000));
    assert_eq!(drain(&mut s), vec![Out::Close(CloseWhy::NoHeartbeat)]);
    assert_eq!(CloseWhy::NoHeartbeat.code(), 1011);
}

#[test]
fn a_token_revoked_since_the_handshake_ends_the_stream_at_the_next_heartbeat() {
    let w = world_with(|l| l.heartbeat_s = 1);
    let mut s = w.open();
    w.auth.revoked.store(true, Ordering::Relaxed);
    s.on_tick(w.at(1000));
    let out = drain(&mut s);
    let e = json_of(&out[0]);
    assert_eq!(e["code"], "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("thu hồi"));
    assert_eq!(out[1], Out::Close(CloseWhy::Unauthorized));
}

#[test]
fn a_token_given_by_auth_frame_is_checked_again_too() {
    let w = world_with(|l| l.heartbeat_s = 1);
    let mut s = w.session(None);
    send(&mut s, json!({"type": "auth", "token": GOOD}), w.at(0));
    s.on_attached(10, w.at(0));
    drain(&mut s);
    w.auth.revoked.store(true, Ordering::Relaxed);
    s.on_tick(w.at(1000));
    assert_eq!(drain(&mut s)[1], Out::Close(CloseWhy::Unauthorized));
}

#[test]
fn shutdown_says_so_and_closes_going_away() {
    let w = world();
    let mut s = w.open();
    s.on_shutdown();
    let out = drain(&mut s);
    assert_eq!(json_of(&out[0])["code"], "shutting_down");
    assert_eq!(out[1], Out::Close(CloseWhy::Stopping));
    assert_eq!(CloseWhy::Stopping.code(), 1001);
    // Nothing after the close.
    s.on_steps(&[Arc::new(Step::new(11, at(), vec![item(&w.keys[0], 3.0)]))]);
    s.on_tick(w.at(100_000));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn read_faults_and_peer_close_end_the_session() {
    let w = world();
    let mut s = w.open();
    s.on_frame(Incoming::Fault(ReadFault::TooBig), w.at(1));
    assert_eq!(drain(&mut s), vec![Out::Close(CloseWhy::TooBig)]);
    assert_eq!(CloseWhy::TooBig.code(), 1009);
    for input in [Incoming::Closed, Incoming::Fault(ReadFault::Broken)] {
        let mut s = w.open();
        s.on_frame(input, w.at(1));
        assert_eq!(drain(&mut s), vec![Out::Stop]);
    }
    let mut s = w.open();
    s.on_hub_closed();
    assert_eq!(drain(&mut s), vec![Out::Close(CloseWhy::Stopping)]);
}

#[test]
fn slots_are_released_when_the_session_ends() {
    let w = world_with(|l| l.max_connections = 1);
    let s = w.open();
    assert_eq!(w.slots.used(SlotKind::Open), 1);
    drop(s);
    assert_eq!(w.slots.used(SlotKind::Open), 0);
    let _again = w.open();
}
