//! Disaster hazards and the Vietnamese risk levels (cấp độ rủi ro thiên
//! tai) of Quyết định 18/2021/QĐ-TTg: the hazard types of Điều 42–56, the
//! level range each may legally carry, and the colour of each level
//! (Phụ lục XII). Shared by warnings (CAP bulletins), alerts and reports.

use serde::{Deserialize, Serialize};

/// A hazard type of QĐ 18/2021 (one per article 42–56), plus epidemics,
/// which health law governs (no disaster risk level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Hazard {
    /// Áp thấp nhiệt đới, bão (Điều 42).
    Storm,
    /// Nước dâng (Điều 43).
    StormSurge,
    /// Mưa lớn (Điều 44).
    HeavyRain,
    /// Lũ, ngập lụt (Điều 45).
    Flood,
    /// Lũ quét, sạt lở đất, sụt lún đất do mưa lũ hoặc dòng chảy (Điều 46).
    FlashFlood,
    /// Sạt lở đất (same article as flash flood, Điều 46).
    Landslide,
    /// Nắng nóng (Điều 47).
    Heat,
    /// Hạn hán (Điều 48).
    Drought,
    /// Xâm nhập mặn (Điều 49).
    Salinity,
    /// Gió mạnh trên biển (Điều 50).
    StrongWind,
    /// Sương mù (Điều 51).
    Fog,
    /// Lốc, sét, mưa đá; dông (Điều 52).
    Thunderstorm,
    /// Rét hại, rét đậm (Điều 53).
    ColdSpell,
    /// Sương muối (Điều 53).
    Frost,
    /// Cháy rừng do tự nhiên (Điều 54).
    Wildfire,
    /// Động đất (Điều 55).
    Earthquake,
    /// Sóng thần (Điều 56).
    Tsunami,
    /// Dịch bệnh: not a QĐ 18/2021 hazard, no risk level.
    Epidemic,
}

impl Hazard {
    /// Every hazard, in a stable order.
    pub const ALL: [Hazard; 18] = [
        Hazard::Storm,
        Hazard::StormSurge,
        Hazard::HeavyRain,
        Hazard::Flood,
        Hazard::FlashFlood,
        Hazard::Landslide,
        Hazard::Heat,
        Hazard::Drought,
        Hazard::Salinity,
        Hazard::StrongWind,
        Hazard::Fog,
        Hazard::Thunderstorm,
        Hazard::ColdSpell,
        Hazard::Frost,
        Hazard::Wildfire,
        Hazard::Earthquake,
        Hazard::Tsunami,
        Hazard::Epidemic,
    ];

    /// The snake_case code used in config, the API and the live stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Hazard::Storm => "storm",
            Hazard::StormSurge => "storm_surge",
            Hazard::HeavyRain => "heavy_rain",
            Hazard::Flood => "flood",
            Hazard::FlashFlood => "flash_flood",
            Hazard::Landslide => "landslide",
            Hazard::Heat => "heat",
            Hazard::Drought => "drought",
            Hazard::Salinity => "salinity",
            Hazard::StrongWind => "strong_wind",
            Hazard::Fog => "fog",
            Hazard::Thunderstorm => "thunderstorm",
            Hazard::ColdSpell => "cold_spell",
            Hazard::Frost => "frost",
            Hazard::Wildfire => "wildfire",
            Hazard::Earthquake => "earthquake",
            Hazard::Tsunami => "tsunami",
            Hazard::Epidemic => "epidemic",
        }
    }

    /// Parse the code.
    pub fn parse(s: &str) -> Option<Hazard> {
        Hazard::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// The Vietnamese name shown to people.
    pub fn name_vi(self) -> &'static str {
        match self {
            Hazard::Storm => "Áp thấp nhiệt đới, bão",
            Hazard::StormSurge => "Nước dâng",
            Hazard::HeavyRain => "Mưa lớn",
            Hazard::Flood => "Lũ, ngập lụt",
            Hazard::FlashFlood => "Lũ quét",
            Hazard::Landslide => "Sạt lở đất",
            Hazard::Heat => "Nắng nóng",
            Hazard::Drought => "Hạn hán",
            Hazard::Salinity => "Xâm nhập mặn",
            Hazard::StrongWind => "Gió mạnh trên biển",
            Hazard::Fog => "Sương mù",
            Hazard::Thunderstorm => "Dông, lốc, sét, mưa đá",
            Hazard::ColdSpell => "Rét đậm, rét hại",
            Hazard::Frost => "Sương muối",
            Hazard::Wildfire => "Cháy rừng do tự nhiên",
            Hazard::Earthquake => "Động đất",
            Hazard::Tsunami => "Sóng thần",
            Hazard::Epidemic => "Dịch bệnh",
        }
    }

    /// The article of QĐ 18/2021 that sets its levels (none for epidemics).
    pub fn article(self) -> Option<u8> {
        Some(match self {
            Hazard::Storm => 42,
            Hazard::StormSurge => 43,
            Hazard::HeavyRain => 44,
            Hazard::Flood => 45,
            Hazard::FlashFlood | Hazard::Landslide => 46,
            Hazard::Heat => 47,
            Hazard::Drought => 48,
            Hazard::Salinity => 49,
            Hazard::StrongWind => 50,
            Hazard::Fog => 51,
            Hazard::Thunderstorm => 52,
            Hazard::ColdSpell | Hazard::Frost => 53,
            Hazard::Wildfire => 54,
            Hazard::Earthquake => 55,
            Hazard::Tsunami => 56,
            Hazard::Epidemic => return None,
        })
    }

    /// The risk levels this hazard may legally carry (inclusive), or none
    /// for a hazard outside QĐ 18/2021 (epidemics).
    pub fn level_range(self) -> Option<(u8, u8)> {
        Some(match self {
            Hazard::Storm => (3, 5),
            Hazard::StormSurge => (2, 5),
            Hazard::HeavyRain => (1, 4),
            Hazard::Flood => (1, 5),
            Hazard::FlashFlood | Hazard::Landslide => (1, 3),
            Hazard::Heat | Hazard::Drought | Hazard::Salinity => (1, 4),
            Hazard::StrongWind => (2, 3),
            Hazard::Fog | Hazard::Thunderstorm => (1, 2),
            Hazard::ColdSpell | Hazard::Frost => (1, 3),
            Hazard::Wildfire | Hazard::Earthquake | Hazard::Tsunami => (1, 5),
            Hazard::Epidemic => return None,
        })
    }

    /// Check a risk level against this hazard's legal range.
    pub fn check_level(self, level: u8) -> Result<RiskLevel, LevelError> {
        match self.level_range() {
            None => Err(LevelError::NoLevels { hazard: self }),
            Some((lo, hi)) if level < lo || level > hi => Err(LevelError::OutOfRange {
                hazard: self,
                level,
                lo,
                hi,
            }),
            Some(_) => Ok(RiskLevel(level)),
        }
    }

    /// Codes that name the hazard in a bulletin's `eventCode` (valueName
    /// `VN-QD18-HAZARD`; upper-case ASCII, the Vietnamese name without
    /// diacritics), besides the snake_case code of [`Hazard::as_str`].
    /// Site config can add its own.
    pub fn default_codes(self) -> &'static [&'static str] {
        match self {
            Hazard::Storm => &["BAO", "AP_THAP_NHIET_DOI", "AP_THAP_NHIET_DOI_BAO"],
            Hazard::StormSurge => &["NUOC_DANG"],
            Hazard::HeavyRain => &["MUA_LON"],
            Hazard::Flood => &["LU", "NGAP_LUT", "LU_NGAP_LUT"],
            Hazard::FlashFlood => &["LU_QUET", "LU_QUET_SAT_LO_DAT"],
            Hazard::Landslide => &["SAT_LO_DAT", "SAT_LO", "SUT_LUN_DAT"],
            Hazard::Heat => &["NANG_NONG"],
            Hazard::Drought => &["HAN_HAN"],
            Hazard::Salinity => &["XAM_NHAP_MAN"],
            Hazard::StrongWind => &["GIO_MANH_TREN_BIEN"],
            Hazard::Fog => &["SUONG_MU"],
            Hazard::Thunderstorm => &["DONG_LOC_SET_MUA_DA", "DONG", "LOC", "SET", "MUA_DA"],
            Hazard::ColdSpell => &["RET_HAI", "RET_DAM", "RET_DAM_RET_HAI"],
            Hazard::Frost => &["SUONG_MUOI", "BANG_GIA"],
            Hazard::Wildfire => &["CHAY_RUNG"],
            Hazard::Earthquake => &["DONG_DAT"],
            Hazard::Tsunami => &["SONG_THAN"],
            Hazard::Epidemic => &["DICH_BENH"],
        }
    }

    /// The hazard a default code names (either form, any case).
    pub fn from_code(code: &str) -> Option<Hazard> {
        let up = code.trim().to_ascii_uppercase();
        Hazard::ALL.into_iter().find(|h| {
            h.as_str().eq_ignore_ascii_case(code.trim()) || h.default_codes().contains(&up.as_str())
        })
    }

    /// Default phrases (lower-case, with diacritics) that name the hazard
    /// in a bulletin's `event` text, most specific first. Site config can
    /// add its own.
    pub fn default_phrases(self) -> &'static [&'static str] {
        match self {
            Hazard::Storm => &["áp thấp nhiệt đới", "bão"],
            Hazard::StormSurge => &["nước dâng"],
            Hazard::HeavyRain => &["mưa lớn"],
            Hazard::Flood => &["ngập lụt", "lũ"],
            Hazard::FlashFlood => &["lũ quét"],
            Hazard::Landslide => &["sạt lở đất", "sạt lở", "sụt lún đất"],
            Hazard::Heat => &["nắng nóng"],
            Hazard::Drought => &["hạn hán"],
            Hazard::Salinity => &["xâm nhập mặn"],
            Hazard::StrongWind => &["gió mạnh trên biển"],
            Hazard::Fog => &["sương mù"],
            Hazard::Thunderstorm => &["dông", "lốc", "sét", "mưa đá"],
            Hazard::ColdSpell => &["rét hại", "rét đậm", "không khí lạnh"],
            Hazard::Frost => &["sương muối", "băng giá"],
            Hazard::Wildfire => &["cháy rừng"],
            Hazard::Earthquake => &["động đất"],
            Hazard::Tsunami => &["sóng thần"],
            Hazard::Epidemic => &["dịch bệnh", "dịch"],
        }
    }
}

impl std::fmt::Display for Hazard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A risk level (cấp độ rủi ro thiên tai) 1–5, checked against its hazard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RiskLevel(u8);

impl RiskLevel {
    /// A level 1–5 (not checked against a hazard: use
    /// [`Hazard::check_level`] when the hazard is known).
    pub fn new(level: u8) -> Option<RiskLevel> {
        (1..=5).contains(&level).then_some(RiskLevel(level))
    }

    /// The number, 1–5.
    pub fn get(self) -> u8 {
        self.0
    }

    /// The map colour of Phụ lục XII as a CSS colour, and its Vietnamese name.
    pub fn colour(self) -> (&'static str, &'static str) {
        match self.0 {
            1 => ("#7ec8f0", "xanh dương nhạt"),
            2 => ("#f5e663", "vàng nhạt"),
            3 => ("#f28c28", "da cam"),
            4 => ("#d7191c", "đỏ"),
            _ => ("#7b2d8e", "tím"),
        }
    }

    /// "cấp độ 3" etc.
    pub fn label_vi(self) -> String {
        format!("cấp độ {}", self.0)
    }
}

/// Why a risk level is not legal for its hazard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// The hazard's range (QĐ 18/2021) does not include the level.
    #[error("risk level {level} is outside {hazard}'s legal range {lo}–{hi} (QĐ 18/2021)")]
    OutOfRange {
        /// The hazard.
        hazard: Hazard,
        /// The level given.
        level: u8,
        /// Lowest legal level.
        lo: u8,
        /// Highest legal level.
        hi: u8,
    },
    /// The hazard has no disaster risk levels (epidemics).
    #[error("{hazard} has no disaster risk level under QĐ 18/2021")]
    NoLevels {
        /// The hazard.
        hazard: Hazard,
    },
}

impl LevelError {
    /// The same, in Vietnamese for the screen and the API.
    pub fn message_vi(&self) -> String {
        match self {
            LevelError::OutOfRange { hazard, level, lo, hi } => format!(
                "Cấp độ rủi ro {level} không hợp lệ cho {}: theo QĐ 18/2021, chỉ từ cấp {lo} đến cấp {hi}",
                hazard.name_vi().to_lowercase()
            ),
            LevelError::NoLevels { hazard } => format!(
                "{} không có cấp độ rủi ro thiên tai theo QĐ 18/2021",
                hazard.name_vi()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_ranges_follow_qd_18_2021() {
        assert!(Hazard::FlashFlood.check_level(3).is_ok());
        assert!(Hazard::FlashFlood.check_level(4).is_err());
        assert!(Hazard::Landslide.check_level(0).is_err());
        assert!(Hazard::HeavyRain.check_level(4).is_ok());
        assert!(Hazard::HeavyRain.check_level(5).is_err());
        assert!(Hazard::Storm.check_level(2).is_err());
        assert!(Hazard::Storm.check_level(5).is_ok());
        assert!(Hazard::Frost.check_level(3).is_ok());
        assert!(Hazard::ColdSpell.check_level(4).is_err());
        assert_eq!(
            Hazard::Epidemic.check_level(1),
            Err(LevelError::NoLevels {
                hazard: Hazard::Epidemic
            })
        );
    }

    #[test]
    fn default_codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for h in Hazard::ALL {
            for c in h.default_codes() {
                assert!(seen.insert(*c), "{c} twice");
                assert_eq!(Hazard::from_code(c), Some(h));
            }
        }
        assert_eq!(Hazard::from_code("lu_quet"), Some(Hazard::FlashFlood));
        assert_eq!(Hazard::from_code("flash_flood"), Some(Hazard::FlashFlood));
        assert_eq!(Hazard::from_code("XYZ"), None);
    }

    #[test]
    fn codes_round_trip() {
        for h in Hazard::ALL {
            assert_eq!(Hazard::parse(h.as_str()), Some(h));
        }
    }

    #[test]
    fn out_of_range_names_the_rule_in_vietnamese() {
        let e = Hazard::FlashFlood.check_level(4).unwrap_err();
        assert_eq!(
            e.message_vi(),
            "Cấp độ rủi ro 4 không hợp lệ cho lũ quét: theo QĐ 18/2021, chỉ từ cấp 1 đến cấp 3"
        );
    }
}
