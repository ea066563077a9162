//! Korean particles chosen by the word they follow, so mock copy reads right
//! ("이어폰은", "세대를", "서울로"), never "이어폰는" or "세대을".
//!
//! The choice depends on whether the word's last syllable ends in a consonant
//! (받침), and for 으로/로 whether that consonant is ㄹ. Digits are read the Korean
//! way (2026 → 이천이십육: ends in ㄱ), Latin words by a small pronunciation rule, and
//! anything else gets both forms ("은(는)"), which is what careful Korean UIs do.

/// The particles that change with the word before them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Particle {
    /// 은/는 (topic).
    Topic,
    /// 이/가 (subject).
    Subject,
    /// 을/를 (object).
    Object,
    /// 과/와 (and, with).
    And,
    /// 으로/로 (toward, as, by).
    Toward,
    /// 이/– before 라면, 라는, 예요 … ("직장인이라면", "세대라면").
    Copula,
}

/// How a word ends, for choosing a particle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Vowel,
    /// ㄹ: a vowel for 으로/로, a consonant for the rest.
    Rieul,
    Consonant,
    Unknown,
}

impl Particle {
    fn forms(self) -> (&'static str, &'static str) {
        // (after a consonant, after a vowel)
        match self {
            Particle::Topic => ("은", "는"),
            Particle::Subject => ("이", "가"),
            Particle::Object => ("을", "를"),
            Particle::And => ("과", "와"),
            Particle::Toward => ("으로", "로"),
            Particle::Copula => ("이", ""),
        }
    }
}

/// `word` followed by the right form of `particle`.
pub fn with(word: &str, particle: Particle) -> String {
    format!("{word}{}", particle_for(word, particle))
}

/// The form of `particle` that follows `word`.
pub fn particle_for(word: &str, particle: Particle) -> String {
    let (after_consonant, after_vowel) = particle.forms();
    match (ending(word), particle) {
        (Ending::Vowel, _) | (Ending::Rieul, Particle::Toward) => after_vowel.to_string(),
        (Ending::Rieul | Ending::Consonant, _) => after_consonant.to_string(),
        (Ending::Unknown, Particle::Toward) => "(으)로".to_string(),
        (Ending::Unknown, _) => format!("{after_consonant}({after_vowel})"),
    }
}

fn ending(word: &str) -> Ending {
    // What is read last: closing brackets, quotes and punctuation are not.
    let trimmed = word.trim_end_matches(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ')' | ']' | '}' | '"' | '\'' | '”' | '’' | '.' | '!' | '?' | '」' | '』'
            )
    });
    let Some(last) = trimmed.chars().last() else {
        return Ending::Unknown;
    };
    if let Some(e) = hangul_ending(last) {
        return e;
    }
    if last.is_ascii_digit() {
        return digits_ending(trimmed);
    }
    if last == '%' {
        return Ending::Vowel; // 퍼센트
    }
    if last.is_ascii_alphabetic() {
        return unit_ending(trimmed).unwrap_or_else(|| latin_ending(trimmed));
    }
    Ending::Unknown
}

fn hangul_ending(c: char) -> Option<Ending> {
    let code = u32::from(c);
    if !(0xAC00..=0xD7A3).contains(&code) {
        return None;
    }
    Some(match (code - 0xAC00) % 28 {
        0 => Ending::Vowel,
        8 => Ending::Rieul,
        _ => Ending::Consonant,
    })
}

/// A number read in Korean: its last digit, or the unit its trailing zeros make
/// (10 십, 100 백, 1000 천, 10000 만).
fn digits_ending(text: &str) -> Ending {
    let digits: String = text
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect::<String>();
    // `digits` is reversed: its start is the number's end.
    let zeros = digits.chars().take_while(|c| *c == '0').count();
    if zeros == digits.len() {
        return Ending::Consonant; // 영
    }
    match zeros {
        0 => match digits.chars().next() {
            // 이, 사, 오, 구
            Some('2' | '4' | '5' | '9') => Ending::Vowel,
            // 일, 칠, 팔
            Some('1' | '7' | '8') => Ending::Rieul,
            // 삼, 육
            _ => Ending::Consonant,
        },
        // 십, 백, 천, 만 (and beyond: 만, 억, 조 all end in a consonant)
        _ => Ending::Consonant,
    }
}

/// A unit after a number, read as its Korean name (30g 삼십 그램, 500ml 오백 밀리리터).
fn unit_ending(text: &str) -> Option<Ending> {
    let unit_start = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !unit_start.ends_with(|c: char| c.is_ascii_digit() || c == ' ') {
        return None;
    }
    let unit = &text[unit_start.len()..];
    let number_before = unit_start
        .trim_end()
        .ends_with(|c: char| c.is_ascii_digit());
    if !number_before {
        return None;
    }
    match unit.to_ascii_lowercase().as_str() {
        "g" | "kg" | "mg" => Some(Ending::Consonant), // 그램
        "ml" | "l" | "cm" | "mm" | "km" | "m" => Some(Ending::Vowel), // 리터, 미터
        _ => None,
    }
}

/// Latin words by how Korean writes them: an acronym by its last letter's name
/// (TV 티브이, SSL 에스에스엘), a word by its last sound (Apple 애플, Nike 나이키,
/// iPhone 아이폰, Samsung 삼성, Google 구글).
fn latin_ending(text: &str) -> Ending {
    let word: String = text
        .chars()
        .rev()
        .take_while(char::is_ascii_alphabetic)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let last = word.chars().last().unwrap_or('a');
    let acronym = word.len() <= 4 && word.chars().all(|c| c.is_ascii_uppercase());
    if acronym {
        return match last {
            'L' | 'R' => Ending::Rieul,
            'M' | 'N' => Ending::Consonant,
            _ => Ending::Vowel,
        };
    }
    let lower = word.to_ascii_lowercase();
    let before_last = lower.chars().rev().nth(1);
    match lower.chars().last().unwrap_or('a') {
        'l' => Ending::Rieul,
        'm' | 'n' => Ending::Consonant,
        // "-ng" (Samsung 삼성), "-ck"/"-k" after a vowel (Mac 맥, Black 블랙), "-t"/"-p" (Kit 킷).
        'g' if before_last == Some('n') => Ending::Consonant,
        'k' | 'c' | 't' | 'p' => Ending::Consonant,
        // A silent final e after m/n still ends in that consonant (iPhone 아이폰, Home 홈).
        'e' if matches!(before_last, Some('m' | 'n')) => Ending::Consonant,
        _ => Ending::Vowel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Particle::{And, Copula, Object, Subject, Topic, Toward};

    #[test]
    fn particles_follow_the_last_syllable() {
        // (word, 은/는, 이/가, 을/를, 과/와, 으로/로)
        let table: &[(&str, [&str; 5])] = &[
            ("이어폰", ["은", "이", "을", "과", "으로"]),
            ("세대", ["는", "가", "를", "와", "로"]),
            ("텀블러", ["는", "가", "를", "와", "로"]),
            ("프로틴플러스 초코맛", ["은", "이", "을", "과", "으로"]),
            ("서울", ["은", "이", "을", "과", "로"]),
            ("물", ["은", "이", "을", "과", "로"]),
            ("브랜드", ["는", "가", "를", "와", "로"]),
            ("단백질", ["은", "이", "을", "과", "로"]),
            ("직장인", ["은", "이", "을", "과", "으로"]),
            ("20–30대 직장인", ["은", "이", "을", "과", "으로"]),
            ("무선 이어폰 (블랙)", ["은", "이", "을", "과", "으로"]),
            ("\"스파클리오\"", ["는", "가", "를", "와", "로"]),
            ("2026", ["은", "이", "을", "과", "으로"]),
            ("2", ["는", "가", "를", "와", "로"]),
            ("1", ["은", "이", "을", "과", "로"]),
            ("10", ["은", "이", "을", "과", "으로"]),
            ("1,000", ["은", "이", "을", "과", "으로"]),
            ("30g", ["은", "이", "을", "과", "으로"]),
            ("500ml", ["는", "가", "를", "와", "로"]),
            ("50%", ["는", "가", "를", "와", "로"]),
            ("Apple", ["는", "가", "를", "와", "로"]),
            ("Nike", ["는", "가", "를", "와", "로"]),
            ("iPhone", ["은", "이", "을", "과", "으로"]),
            ("Samsung", ["은", "이", "을", "과", "으로"]),
            ("Google", ["는", "가", "를", "와", "로"]),
            ("Mac", ["은", "이", "을", "과", "으로"]),
            ("TV", ["는", "가", "를", "와", "로"]),
            ("SSL", ["은", "이", "을", "과", "로"]),
            ("CRM", ["은", "이", "을", "과", "으로"]),
        ];
        for (word, expected) in table {
            let got: Vec<String> = [Topic, Subject, Object, And, Toward]
                .iter()
                .map(|p| particle_for(word, *p))
                .collect();
            assert_eq!(&got, expected, "{word}");
        }
    }

    #[test]
    fn the_copula_disappears_after_a_vowel() {
        assert_eq!(format!("{}라면", with("직장인", Copula)), "직장인이라면");
        assert_eq!(
            format!("{}라면", with("20–30대 세대", Copula)),
            "20–30대 세대라면"
        );
    }

    #[test]
    fn unreadable_endings_get_both_forms() {
        assert_eq!(with("✨", Topic), "✨은(는)");
        assert_eq!(with("", Object), "을(를)");
        assert_eq!(with("🙂", Toward), "🙂(으)로");
    }
}
