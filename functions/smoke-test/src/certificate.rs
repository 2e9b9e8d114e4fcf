//! When a certificate expires: its `notAfter`, read from the DER the TLS
//! handshake delivered (RFC 5280 §4.1). rustls has already verified the chain;
//! only the date is read here, so a small reader beats a full X.509 crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `notAfter` of the X.509 certificate `der`, or `None` if it cannot be read.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (certificate, _) = element(der, 0x30)?;
    let (mut tbs, _) = element(certificate, 0x30)?;
    if tbs.first() == Some(&0xA0) {
        tbs = element(tbs, 0xA0)?.1; // version
    }
    let (_, rest) = element(tbs, 0x02)?; // serial number
    let (_, rest) = element(rest, 0x30)?; // signature algorithm
    let (_, rest) = element(rest, 0x30)?; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (_, rest) = time(validity)?; // notBefore
    time(rest).map(|(not_after, _)| not_after)
}

/// The contents of the DER element of type `tag` at the start of `data`, and what follows it.
fn element(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *data.first()? != tag {
        return None;
    }
    let first = *data.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let bytes = first & 0x7F;
        if bytes == 0 || bytes > 4 {
            return None;
        }
        let length = data.get(2..2 + bytes)?.iter().fold(0usize, |n, b| (n << 8) | *b as usize);
        (length, 2 + bytes)
    };
    let contents = data.get(header..header + length)?;
    Some((contents, &data[header + length..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(data: &[u8]) -> Option<(SystemTime, &[u8])> {
    let tag = *data.first()?;
    let (text, rest) = element(data, tag)?;
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, text) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { text.get(at..at + 2)?.parse().ok() };
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?);
    Some((at, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 1), 20_788);
    }

    #[test]
    fn not_after_is_read_from_a_minimal_certificate() {
        // SEQUENCE { SEQUENCE (tbs) { [0] {INTEGER 2}, INTEGER 1, SEQUENCE {}, SEQUENCE {},
        //   SEQUENCE { UTCTime 250101000000Z, GeneralizedTime 20270102030405Z } } }
        let validity: Vec<u8> = [&[0x17, 13][..], b"250101000000Z", &[0x18, 15], b"20270102030405Z"].concat();
        let tbs: Vec<u8> = [
            &[0xA0, 3, 0x02, 1, 2][..],
            &[0x02, 1, 1],
            &[0x30, 0],
            &[0x30, 0],
            &[0x30, validity.len() as u8],
            &validity,
        ]
        .concat();
        let certificate: Vec<u8> = [&[0x30, tbs.len() as u8][..], &tbs].concat();
        let der: Vec<u8> = [&[0x30, certificate.len() as u8][..], &certificate].concat();
        let expected = UNIX_EPOCH
            + Duration::from_secs((days_from_civil(2027, 1, 2) * 86_400 + 3 * 3600 + 4 * 60 + 5) as u64);
        assert_eq!(not_after(&der), Some(expected));
        assert_eq!(not_after(&der[..der.len() - 3]), None, "a cut certificate is unreadable, not a panic");
    }
}
