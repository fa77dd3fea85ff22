//! Query parameters of API requests.

use super::rest::{self, DeleteOptions, FieldValidation, WriteOptions};
use super::status::{ApiError, ApiResult};

/// A decoded query string; keys may repeat (`dryRun=All&dryRun=All`).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> ApiResult<bool> {
        match self.get(key) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid value {other:?} for {key}: must be true or false"
            ))),
        }
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for {key}: must be an integer"))
            }),
        }
    }

    pub fn write_options(&self) -> ApiResult<WriteOptions> {
        Ok(WriteOptions {
            dry_run: rest::parse_dry_run(self.all("dryRun"))?,
            field_validation: FieldValidation::parse(self.get("fieldValidation").unwrap_or(""))?,
            ..Default::default()
        })
    }

    /// Delete options from the query, layered over those of the body.
    pub fn delete_options(&self, mut opts: DeleteOptions) -> ApiResult<DeleteOptions> {
        if let Some(g) = self.number::<i64>("gracePeriodSeconds")? {
            opts.grace_period_seconds = Some(g);
        }
        if let Some(p) = self.get("propagationPolicy").filter(|p| !p.is_empty()) {
            opts.propagation = Some(rest::parse_propagation(p)?);
        } else if self.flag("orphanDependents")? {
            opts.propagation = Some(rest::Propagation::Orphan);
        }
        if rest::parse_dry_run(self.all("dryRun"))? {
            opts.dry_run = true;
        }
        Ok(opts)
    }
}

fn decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_repeated_and_escaped_keys() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&dryRun=All&limit=5&watch=1",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.write_options().expect("valid").dry_run);
        assert_eq!(q.number::<usize>("limit").expect("valid"), Some(5));
        assert!(q.flag("watch").expect("valid"));
        assert!(Query::parse(Some("limit=x"))
            .number::<usize>("limit")
            .is_err());
        assert!(Query::parse(Some("dryRun=Some")).write_options().is_err());
    }
}
