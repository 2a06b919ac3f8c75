//! Drafting, pure: which clusters serve which villages, the Vietnamese
//! text of a relayed bulletin (with its original issue time, Điều 36
//! QĐ 18/2021: "khi phát lại tin cũ, phải nhắc lại thời điểm ban hành bản
//! tin"), the priority, command keys and payloads.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use serde::Serialize;
use serde_json::json;

use super::Priority;
use crate::config::{Config, SpeakerKind};
use crate::warnings::{WarningState, WarningView};

/// Longest broadcast text, characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Most plays of one broadcast per cluster.
pub const MAX_REPEATS: u32 = 24;

/// One cluster serving a village.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cluster {
    /// Speaker id (topic level).
    pub speaker: String,
    /// The village it serves.
    pub village: String,
    /// `smart` (driven over MQTT) or `fe` (an FE radio station someone must
    /// switch on).
    pub kind: &'static str,
}

/// The clusters serving `villages` (site config `[[speaker]]`), in config
/// order.
pub fn clusters_for(config: &Config, villages: &[String]) -> Vec<Cluster> {
    config
        .speakers
        .iter()
        .filter_map(|s| {
            let v = s.village.as_ref()?;
            villages.contains(v).then(|| Cluster {
                speaker: s.id.clone(),
                village: v.clone(),
                kind: match s.kind {
                    SpeakerKind::Smart => "smart",
                    SpeakerKind::Fe => "fe",
                },
            })
        })
        .collect()
}

/// A plan before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// `warning` or `operator`.
    pub origin: &'static str,
    /// The bulletin relayed.
    pub warning_id: Option<String>,
    /// The bulletin chain's first id.
    pub chain: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Village ids.
    pub villages: Vec<String>,
    /// Vietnamese text.
    pub text_vi: String,
    /// Text in the villages' ethnic language, if any.
    pub text_ethnic: Option<String>,
    /// That language's name.
    pub language: Option<String>,
    /// Plays per cluster.
    pub repeats: u32,
    /// Seconds between the starts of two plays.
    pub gap_secs: u64,
    /// The bulletin's issue time.
    pub issued: Option<DateTime<FixedOffset>>,
    /// When the broadcast ends.
    pub expires: DateTime<Utc>,
}

/// `07 giờ 30 phút ngày 23/11/2026` in Asia/Ho_Chi_Minh.
pub fn spoken_time(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Ho_Chi_Minh)
        .format("%H giờ %M phút ngày %d/%m/%Y")
        .to_string()
}

/// The priority of a relayed bulletin: level ≥ 3 (or an earthquake or
/// tsunami bulletin, which go out at once) is an emergency; any other
/// official bulletin is a priority one.
pub fn warning_priority(w: &WarningView) -> Priority {
    let level = w.level.map(|l| l.get()).unwrap_or(0);
    let immediate = w
        .hazard
        .is_some_and(|h| matches!(h.as_str(), "earthquake" | "tsunami"));
    if level >= 3 || immediate {
        Priority::Emergency
    } else {
        Priority::Priority
    }
}

fn village_names(config: &Config, ids: &[String]) -> String {
    let names: Vec<&str> = ids
        .iter()
        .map(|id| {
            config
                .villages
                .iter()
                .find(|v| &v.id == id)
                .map_or(id.as_str(), |v| v.name.as_str())
        })
        .collect();
    names.join(", ")
}

/// The Vietnamese text relaying bulletin `w`: the commune, the issuing
/// agency and the bulletin's original issue time, the hazard and its risk
/// level, the villages, the headline.
pub fn warning_text(w: &WarningView, config: &Config) -> String {
    let agency = w
        .sender_name
        .clone()
        .unwrap_or_else(|| "Cơ quan khí tượng thủy văn".into());
    let hazard = w
        .hazard
        .map(|h| h.name_vi().to_owned())
        .unwrap_or_else(|| w.event.clone());
    let mut text = format!(
        "Thông báo của Ủy ban nhân dân {}. {} ban hành bản tin lúc {}: cảnh báo {}",
        config.commune.name,
        agency,
        spoken_time(w.sent),
        hazard.to_lowercase(),
    );
    if let Some(l) = w.level {
        text.push_str(&format!(", rủi ro thiên tai {}", l.label_vi()));
    }
    text.push_str(&format!(
        ", ảnh hưởng {}.",
        village_names(config, &w.villages)
    ));
    if let Some(h) = w.headline_vi.as_deref().filter(|h| !h.trim().is_empty()) {
        text.push(' ');
        text.push_str(h.trim());
        if !h.trim().ends_with('.') {
            text.push('.');
        }
    }
    text.push_str(" Đề nghị bà con chủ động phòng tránh, theo dõi các bản tin tiếp theo.");
    text
}

/// The ethnic language and its text for a broadcast to `villages`: the
/// language spoken in most of them (config order breaks ties) that has a
/// `[[broadcasts.ethnic]]` text for `hazard` (or for any hazard).
pub fn ethnic_for<'c>(
    config: &'c Config,
    villages: &[String],
    hazard: Option<&str>,
) -> Option<(&'c str, &'c str)> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for v in config.villages.iter().filter(|v| villages.contains(&v.id)) {
        if let Some(l) = v.language.as_deref() {
            match counts.iter_mut().find(|(x, _)| *x == l) {
                Some(c) => c.1 += 1,
                None => counts.push((l, 1)),
            }
        }
    }
    // Stable: equal counts keep config order.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .into_iter()
        .find_map(|(l, _)| config.broadcasts.ethnic_text(l, hazard).map(|t| (l, t)))
}

/// Whether a cluster in `village` gets the ethnic text in `language`: not
/// when the village is configured with another language.
pub fn speaks(config: &Config, village: &str, language: &str) -> bool {
    config
        .villages
        .iter()
        .find(|v| v.id == village)
        .and_then(|v| v.language.as_deref())
        .is_none_or(|l| l == language)
}

/// The draft for warning `w` (chain `chain`): `None` unless it is active
/// and covers villages.
pub fn from_warning(
    w: &WarningView,
    chain: &str,
    config: &Config,
    now: DateTime<Utc>,
) -> Option<Draft> {
    if w.state != WarningState::Active || w.villages.is_empty() {
        return None;
    }
    let b = &config.broadcasts;
    let ethnic = ethnic_for(config, &w.villages, w.hazard.map(|h| h.as_str()));
    let expires = w
        .expires
        .map(|e| e.with_timezone(&Utc))
        .filter(|e| *e > now)
        .unwrap_or_else(|| now + TimeDelta::minutes(b.expiry_mins as i64));
    Some(Draft {
        origin: "warning",
        warning_id: Some(w.id.clone()),
        chain: Some(chain.to_owned()),
        priority: warning_priority(w),
        villages: w.villages.clone(),
        text_vi: warning_text(w, config),
        text_ethnic: ethnic.map(|(_, t)| t.to_owned()),
        language: ethnic.map(|(l, _)| l.to_owned()),
        repeats: b.repeats.clamp(1, MAX_REPEATS),
        gap_secs: b.gap_secs,
        issued: Some(w.sent),
        expires,
    })
}

/// Check an operator's draft against the site: known villages, a text,
/// sane repeats, an expiry in the future.
pub fn check(d: &Draft, config: &Config, now: DateTime<Utc>) -> Result<(), String> {
    if d.villages.is_empty() {
        return Err("Cần chọn ít nhất một thôn, bản.".into());
    }
    for v in &d.villages {
        if !config.villages.iter().any(|x| &x.id == v) {
            return Err(format!("Không có thôn, bản `{v}` trong cấu hình."));
        }
    }
    let n = d.text_vi.trim().chars().count();
    if n == 0 || n > MAX_TEXT_CHARS {
        return Err(format!(
            "Nội dung tiếng Việt phải dài từ 1 đến {MAX_TEXT_CHARS} ký tự."
        ));
    }
    if d.text_ethnic
        .as_ref()
        .is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(format!(
            "Nội dung tiếng dân tộc dài quá {MAX_TEXT_CHARS} ký tự."
        ));
    }
    if d.repeats == 0 || d.repeats > MAX_REPEATS {
        return Err(format!("Số lần phát phải từ 1 đến {MAX_REPEATS}."));
    }
    if d.repeats > 1 && d.gap_secs == 0 {
        return Err("Khoảng cách giữa hai lần phát phải lớn hơn 0 giây.".into());
    }
    if d.expires <= now {
        return Err("Thời hạn của bản tin phải ở tương lai.".into());
    }
    Ok(())
}

/// The idempotency key of one play on one cluster: unique per store
/// (broadcast id, speaker, play) and per installation (the plan's nonce).
pub fn command_key(broadcast: i64, speaker: &str, play: u32, nonce: &str) -> String {
    format!("bc{broadcast}-{speaker}-p{play}-{nonce}")
}

/// What goes into one command (docs/PROTOCOL.md §8.1).
#[derive(Debug, Clone)]
pub struct CommandSpec<'a> {
    /// Idempotency key.
    pub key: &'a str,
    /// The broadcast id.
    pub broadcast: i64,
    /// Priority.
    pub priority: Priority,
    /// Play number (1-based) and plays in all.
    pub play: u32,
    /// Plays in all.
    pub plays: u32,
    /// Play no earlier than this.
    pub not_before: DateTime<Utc>,
    /// Discard after this.
    pub expires: DateTime<Utc>,
    /// Vietnamese text.
    pub text_vi: &'a str,
    /// Ethnic-language text and its language.
    pub text_ethnic: Option<(&'a str, &'a str)>,
    /// The bulletin relayed, and its issue time.
    pub bulletin: Option<(&'a str, DateTime<FixedOffset>)>,
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Ho_Chi_Minh).to_rfc3339()
}

/// The command payload (JSON), written once per command.
pub fn command_payload(c: &CommandSpec<'_>) -> String {
    json!({
        "v": 1,
        "cmd": "play",
        "idempotency_key": c.key,
        "broadcast": c.broadcast,
        "priority": c.priority.as_str(),
        "preempt": c.priority == Priority::Emergency,
        "play": c.play,
        "plays": c.plays,
        "not_before": local(c.not_before),
        "expires_at": local(c.expires),
        "tts_text": c.text_vi,
        "tts_lang": "vi",
        "ethnic_text": c.text_ethnic.map(|(t, _)| t),
        "ethnic_lang": c.text_ethnic.map(|(_, l)| l),
        "bulletin_ref": c.bulletin.map(|(id, _)| id),
        "bulletin_issued": c.bulletin.map(|(_, t)| t.to_rfc3339()),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Hazard;

    fn config() -> Config {
        crate::config::load_str(
            r#"
[commune]
id = "lung-phinh"
name = "xã Lùng Phình"
province = "Lào Cai"
[[village]]
id = "sin-cai"
name = "Thôn Sín Cái"
[[village]]
id = "lung-phinh"
name = "Thôn Lùng Phình"
[[village]]
id = "ta-lan"
name = "Thôn Tả Lần"
[[speaker]]
id = "loa-01"
village = "sin-cai"
[[speaker]]
id = "loa-02"
village = "sin-cai"
kind = "fe"
[[speaker]]
id = "loa-03"
village = "lung-phinh"
[[speaker]]
id = "loa-04"
village = "ta-lan"
"#,
            "test",
            &[],
        )
        .unwrap()
    }

    fn flash_flood() -> WarningView {
        let sent = DateTime::parse_from_rfc3339("2026-07-14T09:30:00+07:00").unwrap();
        WarningView {
            id: "kttv|LC-2026-0714-01|2026-07-14T09:30:00+07:00".into(),
            state: WarningState::Active,
            hazard: Some(Hazard::FlashFlood),
            level: Hazard::FlashFlood.check_level(3).ok(),
            villages: vec!["sin-cai".into(), "lung-phinh".into()],
            event: "Lũ quét".into(),
            headline_vi: Some("Cảnh báo lũ quét, sạt lở đất".into()),
            sender_name: Some("Đài Khí tượng Thủy văn tỉnh Lào Cai".into()),
            sent,
            expires: None,
            supersedes: None,
        }
    }

    /// Exactly the clusters of the covered villages, FE ones marked.
    #[test]
    fn clusters_of_the_covered_villages() {
        let c = config();
        let got = clusters_for(&c, &["sin-cai".into(), "lung-phinh".into()]);
        let ids: Vec<(&str, &str)> = got.iter().map(|c| (c.speaker.as_str(), c.kind)).collect();
        assert_eq!(
            ids,
            vec![("loa-01", "smart"), ("loa-02", "fe"), ("loa-03", "smart")]
        );
    }

    /// A level-3 flash flood is an emergency; the text names the agency,
    /// the bulletin's issue time in Vietnam's zone, hazard, level and
    /// villages.
    #[test]
    fn a_flash_flood_bulletin_drafts_an_emergency_with_its_issue_time() {
        let c = config();
        let w = flash_flood();
        let now = Utc::now();
        let d = from_warning(&w, &w.id, &c, now).unwrap();
        assert_eq!(d.priority, Priority::Emergency);
        assert_eq!(d.origin, "warning");
        assert!(
            d.text_vi.contains("Đài Khí tượng Thủy văn tỉnh Lào Cai ban hành bản tin lúc 09 giờ 30 phút ngày 14/07/2026"),
            "{}",
            d.text_vi
        );
        assert!(d.text_vi.contains("cấp độ 3"), "{}", d.text_vi);
        assert!(
            d.text_vi.contains("Thôn Sín Cái, Thôn Lùng Phình"),
            "{}",
            d.text_vi
        );
        assert!(d.text_vi.contains("lũ quét"), "{}", d.text_vi);
        assert_eq!(d.expires, now + TimeDelta::minutes(180));
        assert!(check(&d, &c, now).is_ok());
        let mut cancelled = w.clone();
        cancelled.state = WarningState::Cancelled;
        assert!(from_warning(&cancelled, &w.id, &c, now).is_none());
        let mut nowhere = w;
        nowhere.villages.clear();
        assert!(from_warning(&nowhere, "x", &c, now).is_none());
    }

    /// An operator's draft is checked against the site.
    #[test]
    fn operator_drafts_are_checked() {
        let c = config();
        let now = Utc::now();
        let mut d = from_warning(&flash_flood(), "x", &c, now).unwrap();
        d.villages = vec!["khong-co".into()];
        assert!(check(&d, &c, now).unwrap_err().contains("khong-co"));
        d.villages = vec!["ta-lan".into()];
        d.repeats = 0;
        assert!(check(&d, &c, now).is_err());
        d.repeats = 1;
        d.expires = now;
        assert!(check(&d, &c, now).is_err());
    }

    /// Keys are stable for a (broadcast, cluster, play) and the payload
    /// carries the key, expiry and pre-emption.
    #[test]
    fn payload_carries_key_expiry_and_preemption() {
        let key = command_key(7, "loa-01", 2, "ab12");
        assert_eq!(key, "bc7-loa-01-p2-ab12");
        let t = Utc::now();
        let p = command_payload(&CommandSpec {
            key: &key,
            broadcast: 7,
            priority: Priority::Emergency,
            play: 2,
            plays: 3,
            not_before: t,
            expires: t + TimeDelta::hours(1),
            text_vi: "Thông báo",
            text_ethnic: None,
            bulletin: None,
        });
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["idempotency_key"], key);
        assert_eq!(v["preempt"], true);
        assert_eq!(v["priority"], "emergency");
        assert!(v["expires_at"].as_str().unwrap().ends_with("+07:00"));
    }
}
