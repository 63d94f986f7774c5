//! The demo API's books on disk (`jifen dev` keeps them across restarts): read at start,
//! written after each change.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::{Books, Entry, Faults, Guarantees, PointsApi};

/// The books as written to their file (`jifen dev` keeps the demo's across restarts).
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct SavedBooks {
    members: HashMap<String, i64>,
    /// reference → (member, points, status)
    entries: HashMap<String, (String, i64, String)>,
    credits: HashSet<String>,
}

impl From<&Books> for SavedBooks {
    fn from(books: &Books) -> Self {
        Self {
            members: books.members.clone(),
            entries: books
                .entries
                .iter()
                .map(|(r, e)| (r.clone(), (e.member.clone(), e.points, e.status.to_owned())))
                .collect(),
            credits: books.credits.clone(),
        }
    }
}

impl From<SavedBooks> for Books {
    fn from(saved: SavedBooks) -> Self {
        Self {
            members: saved.members,
            entries: saved
                .entries
                .into_iter()
                .map(|(r, (member, points, status))| {
                    let status = if status == "REVERSED" {
                        "REVERSED"
                    } else {
                        "DONE"
                    };
                    (
                        r,
                        Entry {
                            member,
                            points,
                            status,
                        },
                    )
                })
                .collect(),
            credits: saved.credits,
        }
    }
}

impl PointsApi {
    /// An API whose books live in `path` (read if it exists, written after each change), and
    /// whether it started empty (a first start, to seed).
    pub fn persistent(api_key: &str, path: &std::path::Path) -> std::io::Result<(Arc<Self>, bool)> {
        let (books, fresh) = match std::fs::read(path) {
            Ok(bytes) => {
                let saved: SavedBooks = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::other(format!(
                        "{} is not the demo's books: {e}",
                        path.display()
                    ))
                })?;
                (Books::from(saved), false)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Books::default(), true),
            Err(e) => return Err(e),
        };
        Ok((
            Arc::new(Self {
                api_key: api_key.to_owned(),
                books: Mutex::new(books),
                store: Some(path.to_owned()),
                guarantees: Guarantees::default(),
                faults: Faults::default(),
                applied_deducts: AtomicU32::new(0),
            }),
            fresh,
        ))
    }

    /// Writes the books to their file, if they have one (under the books' lock, so writes come
    /// in the order of the changes; a demo's rate, not a ledger's).
    pub(super) fn saved(&self, books: &Books) {
        let Some(path) = &self.store else {
            return;
        };
        let written = serde_json::to_vec(&SavedBooks::from(books))
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "the demo API's books were not saved");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn books_with_a_file_are_there_after_a_restart_and_a_damaged_file_is_refused() {
        let path = std::env::temp_dir().join(format!("jifen-books-{}.json", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (api, fresh) = PointsApi::persistent("k", &path).unwrap();
        assert!(fresh, "a first start, to seed");
        api.credit_direct("alice", 500);
        if let Ok(mut books) = api.books.lock() {
            books.entries.insert(
                "r-1".into(),
                Entry {
                    member: "alice".into(),
                    points: 20,
                    status: "REVERSED",
                },
            );
            api.saved(&books);
        }
        drop(api);
        let (again, fresh) = PointsApi::persistent("k", &path).unwrap();
        assert!(!fresh, "nothing to seed again");
        assert_eq!(again.points_of("alice"), Some(500));
        assert_eq!(again.books().entries["r-1"].status, "REVERSED");
        std::fs::write(&path, "not json").unwrap();
        assert!(PointsApi::persistent("k", &path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
