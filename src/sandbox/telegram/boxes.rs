//! Update boxes: Telegram's event sequences, and how a difference is cut
//! from one.
//!
//! Telegram numbers what happens to an account in sequences a client can
//! check for gaps: the common box (`pts`: private chats and basic groups),
//! the secondary box (`qts`: `updateBotStopped`, participant changes), and
//! one box per channel (its own `pts`). Each event advances its box by its
//! `pts_count` (one per message, N for N deleted messages). This module is
//! the arithmetic alone — no TL, no sockets — so gaps, slices and the
//! too-long cut-off are unit-tested as plain data.

use serde::{Deserialize, Serialize};

use super::accounts::AccountId;

/// A member's standing in a group, as Telegram's participant types tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Creator,
    Admin,
    Member,
    Banned,
    Left,
}

impl Role {
    /// Whether the member is in the group now (sees and may post).
    pub fn is_in(self) -> bool {
        matches!(self, Role::Creator | Role::Admin | Role::Member)
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Role::Creator | Role::Admin)
    }
}

/// What happened at one step of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BoxEvent {
    NewMessage {
        message_id: i32,
    },
    EditMessage {
        message_id: i32,
    },
    DeleteMessages {
        message_ids: Vec<i32>,
    },
    /// `updateBotStopped` (qts): the user blocked (`stopped`) or unblocked
    /// the bot.
    BotStopped {
        user_id: AccountId,
        stopped: bool,
        date: i32,
    },
    /// `updateBotMessageReaction` (qts): `user_id` changed its reactions
    /// to a message of its chat with the bot (`group: None`) or of a group.
    Reaction {
        group: Option<i64>,
        message_id: i32,
        user_id: AccountId,
        old: Vec<String>,
        new: Vec<String>,
        date: i32,
    },
    /// `updateChatParticipant` / `updateChannelParticipant` (qts).
    Participant {
        group: i64,
        user_id: AccountId,
        actor: AccountId,
        prev: Option<Role>,
        new: Option<Role>,
        date: i32,
    },
}

impl BoxEvent {
    /// How far the event advances its box.
    pub fn count(&self) -> i32 {
        match self {
            BoxEvent::DeleteMessages { message_ids } => {
                i32::try_from(message_ids.len()).unwrap_or(i32::MAX)
            }
            _ => 1,
        }
    }
}

/// One box: where it is, and each step `(pts after it, event)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateBox {
    pub pts: i32,
    pub log: Vec<(i32, BoxEvent)>,
    /// The highest pts handed to the account (pushed to a live connection
    /// or served in a difference): `0` means it never heard of this box.
    #[serde(default)]
    pub delivered: i32,
    /// The pts the box had when the account joined (channel boxes).
    #[serde(default = "first_pts")]
    pub joined_at: i32,
}

fn first_pts() -> i32 {
    1
}

impl Default for UpdateBox {
    fn default() -> Self {
        UpdateBox {
            pts: 1,
            log: Vec::new(),
            delivered: 0,
            joined_at: 1,
        }
    }
}

/// How a difference is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DifferenceRules {
    /// At most this many events per answer (the rest come in the next).
    pub slice: usize,
    /// A client further behind than this many pts gets "too long" and
    /// starts again from the box's current state.
    pub too_long: i32,
}

impl Default for DifferenceRules {
    fn default() -> Self {
        DifferenceRules {
            slice: 100,
            too_long: 100_000,
        }
    }
}

/// What a box owes a client at `pts`.
#[derive(Debug, PartialEq)]
pub enum Owed<'a> {
    /// Nothing: the client is up to date.
    Nothing,
    /// The client is too far behind (or ahead of the box: the sandbox lost
    /// state): it must resync at `pts`, the box's current state.
    TooLong { pts: i32 },
    /// `events`, after which the client is at `reached`; `last` when that
    /// is the box's current state (otherwise: a slice, ask again).
    Events {
        events: &'a [(i32, BoxEvent)],
        reached: i32,
        last: bool,
    },
}

impl UpdateBox {
    /// Records one event; returns the pts after it.
    pub fn record(&mut self, event: BoxEvent) -> i32 {
        self.pts = self.pts.saturating_add(event.count());
        self.log.push((self.pts, event));
        self.pts
    }

    /// The events after `pts`, oldest first.
    pub fn since(&self, pts: i32) -> &[(i32, BoxEvent)] {
        let start = self.log.partition_point(|(at, _)| *at <= pts);
        &self.log[start..]
    }

    /// The pts at which the event matching `is` was recorded.
    pub fn pts_of(&self, is: impl Fn(&BoxEvent) -> bool) -> Option<i32> {
        self.log.iter().find(|(_, e)| is(e)).map(|(pts, _)| *pts)
    }

    /// What a client at `pts` is owed, cut by `rules`.
    pub fn owed(&self, pts: i32, rules: DifferenceRules) -> Owed<'_> {
        if pts > self.pts || self.pts.saturating_sub(pts) > rules.too_long {
            return Owed::TooLong { pts: self.pts };
        }
        let events = self.since(pts);
        if events.is_empty() {
            return Owed::Nothing;
        }
        if events.len() > rules.slice {
            let events = &events[..rules.slice.max(1)];
            let reached = events.last().map_or(pts, |(at, _)| *at);
            return Owed::Events {
                events,
                reached,
                last: false,
            };
        }
        Owed::Events {
            events,
            reached: self.pts,
            last: true,
        }
    }

    /// Notes that the account now has everything up to `pts`.
    pub fn deliver(&mut self, pts: i32) {
        self.delivered = self.delivered.max(pts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a client stands against a pushed update: what its own box
    /// check does (grammers' `process_updates`).
    #[derive(Debug, PartialEq, Eq)]
    pub enum Check {
        Apply,
        AlreadyHad,
        Gap,
    }

    /// A client at `local` receiving an update at `pts` with `count`.
    pub fn check(local: i32, pts: i32, count: i32) -> Check {
        match (local + count).cmp(&pts) {
            std::cmp::Ordering::Equal => Check::Apply,
            std::cmp::Ordering::Greater => Check::AlreadyHad,
            std::cmp::Ordering::Less => Check::Gap,
        }
    }

    fn new(id: i32) -> BoxEvent {
        BoxEvent::NewMessage { message_id: id }
    }

    fn filled(n: i32) -> UpdateBox {
        let mut b = UpdateBox::default();
        for id in 1..=n {
            b.record(new(id));
        }
        b
    }

    #[test]
    fn deletes_advance_by_their_count_and_pushes_chain_without_gaps() {
        let mut b = UpdateBox::default();
        let mut local = b.pts;
        let events = [
            new(1),
            new(2),
            BoxEvent::DeleteMessages {
                message_ids: vec![1, 2],
            },
            new(3),
        ];
        for event in events {
            let count = event.count();
            let pts = b.record(event);
            assert_eq!(check(local, pts, count), Check::Apply);
            local = pts;
        }
        assert_eq!(b.pts, 6);
        // A client that missed the delete sees a gap at the next push.
        assert_eq!(check(3, 6, 1), Check::Gap);
        assert_eq!(check(6, 6, 1), Check::AlreadyHad);
        assert_eq!(b.since(3).len(), 2);
        assert_eq!(b.pts_of(|e| *e == new(3)), Some(6));
    }

    #[test]
    fn an_up_to_date_client_is_owed_nothing_and_one_ahead_resyncs() {
        let b = filled(3);
        assert_eq!(b.owed(4, DifferenceRules::default()), Owed::Nothing);
        assert_eq!(
            b.owed(9, DifferenceRules::default()),
            Owed::TooLong { pts: 4 }
        );
    }

    #[test]
    fn a_backlog_comes_in_slices_each_ending_where_the_next_begins() {
        let b = filled(250);
        let rules = DifferenceRules {
            slice: 100,
            too_long: 1000,
        };
        let mut pts = 1;
        let mut seen = Vec::new();
        let mut answers = 0;
        loop {
            answers += 1;
            match b.owed(pts, rules) {
                Owed::Events {
                    events,
                    reached,
                    last,
                } => {
                    assert!(events.len() <= 100);
                    seen.extend(events.iter().map(|(_, e)| e.clone()));
                    pts = reached;
                    if last {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(answers, 3);
        assert_eq!(pts, b.pts);
        assert_eq!(seen, (1..=250).map(new).collect::<Vec<_>>());
        assert_eq!(b.owed(pts, rules), Owed::Nothing);
    }

    #[test]
    fn too_far_behind_is_too_long() {
        let b = filled(50);
        let rules = DifferenceRules {
            slice: 10,
            too_long: 40,
        };
        assert_eq!(b.owed(1, rules), Owed::TooLong { pts: 51 });
        assert!(matches!(
            b.owed(11, rules),
            Owed::Events {
                last: false,
                reached: 21,
                ..
            }
        ));
    }

    #[test]
    fn old_state_files_parse() {
        let old = r#"{"pts":3,"log":[[2,{"kind":"new_message","message_id":1}],[3,{"kind":"edit_message","message_id":1}]]}"#;
        let b: UpdateBox = serde_json::from_str(old).unwrap();
        assert_eq!(b.log[1].1, BoxEvent::EditMessage { message_id: 1 });
        assert_eq!((b.delivered, b.joined_at), (0, 1));
    }
}
