//! Query strings, strictly: an unknown or repeated parameter is an error
//! that names it, like an unknown field in a body.

use std::collections::HashMap;

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
}

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
}
