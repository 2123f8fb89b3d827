//! The line a console page shows after an action ("Discarded 3 dead jobs"). It travels in
//! the redirect's query with a tag made with the session's own secret (its CSRF token), so
//! a page shows only a notice the console made for this session: a crafted link cannot
//! make the console say anything.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::session::Session;

/// The query (`notice=…&ns=…`) that carries `text` to the next page of `session`.
pub fn query(session: &Session, text: &str) -> String {
    let tag = URL_SAFE_NO_PAD.encode(mac(session, text).finalize().into_bytes());
    serde_urlencoded::to_string([("notice", text), ("ns", tag.as_str())]).unwrap_or_default()
}

/// The notice to show: `text` when `tag` is the one [`query`] made for it in this session.
pub fn shown<'a>(session: &Session, text: Option<&'a str>, tag: Option<&str>) -> Option<&'a str> {
    let (text, tag) = (text?, URL_SAFE_NO_PAD.decode(tag?).ok()?);
    mac(session, text).verify_slice(&tag).ok().map(|()| text)
}

fn mac(session: &Session, text: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(session.csrf.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"console notice\0");
    mac.update(text.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(csrf: &str) -> Session {
        Session::with_csrf(csrf)
    }

    fn parts(q: &str) -> (String, String) {
        let p: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap();
        (p[0].1.clone(), p[1].1.clone())
    }

    #[test]
    fn a_notice_shows_in_its_own_session_only_and_unchanged() {
        let (text, tag) = parts(&query(&session("s1"), "Discarded 2 dead jobs."));
        assert_eq!(shown(&session("s1"), Some(&text), Some(&tag)), Some("Discarded 2 dead jobs."));
        assert_eq!(shown(&session("s2"), Some(&text), Some(&tag)), None);
        assert_eq!(shown(&session("s1"), Some("Discarded 20 dead jobs."), Some(&tag)), None);
        assert_eq!(shown(&session("s1"), Some(&text), None), None);
        assert_eq!(shown(&session("s1"), Some(&text), Some("not base64!")), None);
    }
}
