//! Where a request came from, as sessions and the audit trail record it.

/// The client's address (as the throttles see it: trusted proxies honoured, IPv6 by its /64)
/// and its user agent, cut to a length worth storing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    pub ip: String,
    pub user_agent: String,
}

impl RequestOrigin {
    /// User agents longer than this are cut: a header must not grow a row without bound.
    pub const MAX_USER_AGENT: usize = 256;

    pub fn new(ip: String, user_agent: &str) -> Self {
        let user_agent: String = user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(Self::MAX_USER_AGENT)
            .collect();
        RequestOrigin { ip, user_agent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cut_and_stripped_of_control_characters() {
        let origin = RequestOrigin::new("10.0.0.1".into(), &format!("a\nb{}", "x".repeat(999)));
        assert_eq!(
            origin.user_agent.chars().count(),
            RequestOrigin::MAX_USER_AGENT
        );
        assert!(origin.user_agent.starts_with("abx"));
    }
}
