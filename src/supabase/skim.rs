//! Reading the two big answers — a page of 1000 auth users, a page of 1000 roster rows —
//! straight from their bytes, keeping only the members this tool reads and skipping the
//! rest unparsed: a page never becomes a tree of JSON values (at 100k users that tree is
//! most of the client's CPU time and memory). Each reader answers exactly what parsing
//! into a `serde_json::Value` and looking the members up would: a later duplicate member
//! wins, and a value of an unexpected kind is reported, not guessed at. No judging of the
//! values here: `auth.rs` and `rest.rs` do that.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The members of a User object that reconciliation reads, as given (`None`: absent).
#[derive(Debug, Default)]
pub(super) struct UserFields {
    pub id: Option<Value>,
    pub email: Option<Value>,
    pub banned_until: Option<Value>,
    pub deleted_at: Option<Value>,
    pub is_anonymous: Option<Value>,
    pub last_sign_in_at: Option<Value>,
}

/// A `GET /admin/users` answer.
pub(super) struct UsersPage {
    /// `None`: the answer is not an object, or its `users` member is absent or not a list.
    pub users: Option<Vec<Item>>,
}

/// One element of `users`.
pub(super) enum Item {
    User(UserFields),
    NotAnObject,
}

/// A PostgREST answer: `None` when it is not a list; else each row's `email` member
/// (`None` when the row is not an object or has no `email`).
pub(super) struct RowsPage(pub Option<Vec<Option<Value>>>);

/// The visitor methods for every JSON value but lists and objects: each answers
/// `$other`.
macro_rules! otherwise {
    ($other:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
    };
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A list of `T`, or `None` for any other value.
struct ListOf<T>(Option<Vec<T>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ListOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ListOf<T>, D::Error> {
        struct ListVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = ListOf<T>;
            otherwise!(ListOf(None));
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListOf<T>, A::Error> {
                skip_map(map)?;
                Ok(ListOf(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListOf<T>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element::<T>()? {
                    items.push(item);
                }
                Ok(ListOf(Some(items)))
            }
        }
        d.deserialize_any(ListVisitor(std::marker::PhantomData))
    }
}

/// The member names read here; every other member is skipped unread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Users,
    Id,
    Email,
    BannedUntil,
    DeletedAt,
    IsAnonymous,
    LastSignInAt,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "users" => Key::Users,
                    "id" => Key::Id,
                    "email" => Key::Email,
                    "banned_until" => Key::BannedUntil,
                    "deleted_at" => Key::DeletedAt,
                    "is_anonymous" => Key::IsAnonymous,
                    "last_sign_in_at" => Key::LastSignInAt,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for UsersPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UsersPage, D::Error> {
        struct PageVisitor;
        impl<'de> Visitor<'de> for PageVisitor {
            type Value = UsersPage;
            otherwise!(UsersPage { users: None });
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<UsersPage, A::Error> {
                skip_seq(seq)?;
                Ok(UsersPage { users: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UsersPage, A::Error> {
                let mut users = None;
                while let Some(key) = map.next_key::<Key>()? {
                    if key == Key::Users {
                        users = map.next_value::<ListOf<Item>>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(UsersPage { users })
            }
        }
        d.deserialize_any(PageVisitor)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = Item;
            otherwise!(Item::NotAnObject);
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Item, A::Error> {
                skip_seq(seq)?;
                Ok(Item::NotAnObject)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
                let mut f = UserFields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Id => &mut f.id,
                        Key::Email => &mut f.email,
                        Key::BannedUntil => &mut f.banned_until,
                        Key::DeletedAt => &mut f.deleted_at,
                        Key::IsAnonymous => &mut f.is_anonymous,
                        Key::LastSignInAt => &mut f.last_sign_in_at,
                        Key::Users | Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<Value>()?);
                }
                Ok(Item::User(f))
            }
        }
        d.deserialize_any(ItemVisitor)
    }
}

impl<'de> Deserialize<'de> for RowsPage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RowsPage, D::Error> {
        Ok(RowsPage(
            ListOf::<RowEmail>::deserialize(d)?
                .0
                .map(|rows| rows.into_iter().map(|r| r.0).collect()),
        ))
    }
}

/// One row's `email` member (`None`: not an object, or no such member).
struct RowEmail(Option<Value>);

impl<'de> Deserialize<'de> for RowEmail {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RowEmail, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = RowEmail;
            otherwise!(RowEmail(None));
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RowEmail, A::Error> {
                skip_seq(seq)?;
                Ok(RowEmail(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RowEmail, A::Error> {
                let mut email = None;
                while let Some(key) = map.next_key::<Key>()? {
                    if key == Key::Email {
                        email = Some(map.next_value::<Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RowEmail(email))
            }
        }
        d.deserialize_any(RowVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the `Value` route reads from the same text.
    fn by_value(text: &str) -> Option<Vec<Option<Value>>> {
        let v: Value = serde_json::from_str(text).unwrap();
        v.get("users").and_then(Value::as_array).map(|items| {
            items
                .iter()
                .map(|item| {
                    item.as_object()
                        .map(|o| o.get("id").cloned().unwrap_or(Value::Null))
                })
                .collect()
        })
    }

    fn skimmed(text: &str) -> Option<Vec<Option<Value>>> {
        let page: UsersPage = serde_json::from_str(text).unwrap();
        page.users.map(|items| {
            items
                .into_iter()
                .map(|item| match item {
                    Item::User(f) => Some(f.id.unwrap_or(Value::Null)),
                    Item::NotAnObject => None,
                })
                .collect()
        })
    }

    #[test]
    fn users_pages_read_as_the_value_route_reads_them() {
        for text in [
            r#"{"users": [{"id": "a", "x": {"deep": [1, {"id": "no"}]}}, {"id": "b", "id": "c"}], "aud": "authenticated"}"#,
            r#"{"users": [7, "s", null, [1, 2], {}, {"i\u0064": "escaped"}]}"#,
            r#"{"users": {"id": "a"}}"#,
            r#"{"users": null}"#,
            r#"{"users": [], "users": [{"id": "later"}]}"#,
            r#"{"aud": "authenticated"}"#,
            r#"[{"users": []}]"#,
            r#""users""#,
            "42",
        ] {
            assert_eq!(skimmed(text), by_value(text), "{text}");
        }
    }

    #[test]
    fn every_read_member_is_kept_as_given() {
        let page: UsersPage = serde_json::from_str(
            r#"{"users": [{"id": "u1", "email": "A@x.io", "banned_until": "2126-01-01T00:00:00Z",
                "deleted_at": null, "is_anonymous": false, "identities": [{"email": "other"}]}]}"#,
        )
        .unwrap();
        let Some([Item::User(f)]) = page.users.as_deref() else {
            panic!("one user")
        };
        assert_eq!(f.id, Some(json!("u1")));
        assert_eq!(f.email, Some(json!("A@x.io")));
        assert_eq!(f.banned_until, Some(json!("2126-01-01T00:00:00Z")));
        assert_eq!(f.deleted_at, Some(Value::Null));
        assert_eq!(f.is_anonymous, Some(json!(false)));
    }

    #[test]
    fn rows_pages_keep_each_rows_email_member() {
        let page: RowsPage = serde_json::from_str(
            r#"[{"email": "a@x.io"}, {"email": null}, {}, {"email": 42}, [1], "x", {"email": "b", "email": {"k": 1}}]"#,
        )
        .unwrap();
        assert_eq!(
            page.0,
            Some(vec![
                Some(json!("a@x.io")),
                Some(Value::Null),
                None,
                Some(json!(42)),
                None,
                None,
                Some(json!({"k": 1})),
            ])
        );
        for not_a_list in [r#"{"email": "a"}"#, "null", "3"] {
            let page: RowsPage = serde_json::from_str(not_a_list).unwrap();
            assert!(page.0.is_none(), "{not_a_list}");
        }
        assert!(serde_json::from_str::<RowsPage>("[{").is_err());
    }
}
