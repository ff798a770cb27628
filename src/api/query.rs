//! Query strings, strictly: an unknown or repeated parameter is an error
//! that names it, like an unknown field in a body.
//!
//! A parameter that several endpoints take is judged by one rule here, with
//! one code: a value that does not parse is code 4, one out of range code 5,
//! whichever endpoint it was given to (`wait` takes fractions everywhere,
//! `after` is a cursor ≥ 0, `limit` 1 to the endpoint's maximum).

use std::collections::HashMap;
use std::time::Duration;

use crate::error::ApiError;

/// The parameters of one query string.
#[derive(Debug, Default)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Parses `raw`, accepting only the parameters in `known` and `bot`
    /// (which every endpoint takes: an operator's choice of bot).
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if name != "bot" && !known.contains(&name.as_ref()) {
                let mut expected = known.to_vec();
                expected.push("bot");
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{name}` (expected one of: {})",
                    expected.join(", ")
                )));
            }
            if params
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ApiError::invalid(format!(
                    "query parameter `{name}` is given more than once"
                )));
            }
        }
        Ok(Query { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Parameter `name` as an integer, if present.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|value| {
                value.parse().map_err(|_| {
                    ApiError::invalid(format!("query parameter `{name}` must be an integer"))
                })
            })
            .transpose()
    }

    /// `?wait=SECONDS`: a number (fractions allowed) from 0 to [`MAX_WAIT_SECS`].
    pub fn wait(&self) -> Result<Option<Duration>, ApiError> {
        let Some(raw) = self.get("wait") else {
            return Ok(None);
        };
        let secs: f64 = raw
            .parse()
            .ok()
            .filter(|secs: &f64| secs.is_finite())
            .ok_or_else(|| {
                ApiError::invalid("query parameter `wait` must be a number of seconds")
            })?;
        if !(0.0..=MAX_WAIT_SECS).contains(&secs) {
            return Err(ApiError::rejected(format!(
                "query parameter `wait` must be between 0 and {MAX_WAIT_SECS} seconds"
            )));
        }
        Ok(Some(Duration::from_secs_f64(secs)))
    }

    /// `?after=N`: a cursor or id, 0 or more (0 when absent).
    pub fn after(&self) -> Result<i64, ApiError> {
        match self.integer("after")? {
            None => Ok(0),
            Some(after) if after >= 0 => Ok(after),
            Some(_) => Err(ApiError::rejected(
                "query parameter `after` must be 0 or more",
            )),
        }
    }

    /// `?limit=N`: 1 to `max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.integer("limit")? {
            None => Ok(default),
            Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
            Some(_) => Err(ApiError::rejected(format!(
                "query parameter `limit` must be between 1 and {max}"
            ))),
        }
    }
}

/// The longest `?wait=` in seconds, on every endpoint that takes one.
pub const MAX_WAIT_SECS: f64 = 60.0;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn names_what_is_wrong() {
        let err = Query::parse(Some("wiat=3"), &["wait"]).unwrap_err();
        assert_eq!(err.code, ErrorCode::Invalid);
        assert!(err.message.contains("`wiat`"), "{}", err.message);
        let err = Query::parse(Some("wait=1&wait=2"), &["wait"]).unwrap_err();
        assert!(err.message.contains("more than once"), "{}", err.message);
        let query = Query::parse(Some("after=x"), &["after"]).unwrap();
        assert!(query.integer("after").is_err());
        let query = Query::parse(Some("after=12"), &["after"]).unwrap();
        assert_eq!(query.integer("after").unwrap(), Some(12));
        assert!(Query::parse(None, &[]).is_ok());
    }

    #[test]
    fn shared_parameters_follow_one_rule() {
        let q = |raw: &str| Query::parse(Some(raw), &["wait", "after", "limit"]).unwrap();
        assert_eq!(
            q("wait=0.5").wait().unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(q("").wait().unwrap(), None);
        assert_eq!(q("wait=x").wait().unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(q("wait=NaN").wait().unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(q("wait=61").wait().unwrap_err().code, ErrorCode::Rejected);
        assert_eq!(q("wait=-0.1").wait().unwrap_err().code, ErrorCode::Rejected);
        assert_eq!(q("").after().unwrap(), 0);
        assert_eq!(q("after=7").after().unwrap(), 7);
        assert_eq!(q("after=-1").after().unwrap_err().code, ErrorCode::Rejected);
        assert_eq!(q("after=1.5").after().unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(q("").limit(10, 100).unwrap(), 10);
        assert_eq!(q("limit=100").limit(10, 100).unwrap(), 100);
        assert_eq!(
            q("limit=0").limit(10, 100).unwrap_err().code,
            ErrorCode::Rejected
        );
        assert_eq!(
            q("limit=101").limit(10, 100).unwrap_err().code,
            ErrorCode::Rejected
        );
        assert_eq!(
            q("limit=ten").limit(10, 100).unwrap_err().code,
            ErrorCode::Invalid
        );
    }
}
