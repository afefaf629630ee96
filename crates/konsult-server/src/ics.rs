//! iCalendar (RFC 5545) invites for the patient: the time and the join
//! link, no personal data.

use chrono::{DateTime, Duration, Utc};
use konsult_domain::ConsultationId;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets (RFC 5545 §3.1), never inside a
/// UTF-8 character, and ends it with CRLF.
fn fold(line: &str) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if used + len > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += len;
    }
    out.push_str("\r\n");
    out
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The invite for a consultation.
pub fn invite(
    id: ConsultationId,
    clinic_name: &str,
    join_url: &str,
    start: DateTime<Utc>,
    length_minutes: u32,
    now: DateTime<Utc>,
) -> String {
    let end = start + Duration::minutes(i64::from(length_minutes));
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Konsult//Videokonsultation//DA".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{id}@konsult"),
        format!("DTSTAMP:{}", stamp(now)),
        format!("DTSTART:{}", stamp(start)),
        format!("DTEND:{}", stamp(end)),
        format!("SUMMARY:{}", escape(&format!("Videokonsultation – {clinic_name}"))),
        format!(
            "DESCRIPTION:{}",
            escape(&format!(
                "Din videokonsultation med {clinic_name}.\nÅbn linket lidt før tid og følg vejledningen på skærmen:\n{join_url}"
            ))
        ),
        format!("URL:{join_url}"),
        "BEGIN:VALARM".to_owned(),
        "TRIGGER:-PT15M".to_owned(),
        "ACTION:DISPLAY".to_owned(),
        "DESCRIPTION:Videokonsultation om 15 minutter".to_owned(),
        "END:VALARM".to_owned(),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    lines.iter().map(|l| fold(l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_has_the_times_and_link_with_crlf_and_folding() {
        let start: DateTime<Utc> = "2026-11-26T09:00:00Z".parse().unwrap();
        let url = format!("https://klinik.example/join/{}", "x".repeat(60));
        let ics = invite(
            ConsultationId::from_uuid(uuid::Uuid::nil()),
            "Fysio, Nord; Aps",
            &url,
            start,
            30,
            start,
        );
        assert!(ics.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(ics.contains("DTSTART:20261126T090000Z\r\n"));
        assert!(ics.contains("DTEND:20261126T093000Z\r\n"));
        assert!(ics.contains("Fysio\\, Nord\\; Aps"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line}");
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains(&format!("URL:{url}")));
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
    }
}
