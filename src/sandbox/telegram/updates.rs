//! Updates: what an account is told, pushed live or fetched with
//! `updates.getDifference`.
//!
//! Every change to an account's box has one `pts`, so a client that missed
//! pushes (offline, dropped connection) gets exactly the missed events from
//! `getDifference`, and a client that saw them all sees no gap. `seq` stays 0
//! (the sandbox sends no seq-ordered updates) and `qts` too (no secret chats).

use std::collections::BTreeSet;

use grammers_tl_types as tl;
use grammers_tl_types::Serializable;

use super::accounts::AccountId;
use super::render;
use super::world::{BoxEvent, StoredMessage, World};
use crate::sandbox::Outbox;

/// At most this many box events per `updates.difference`; the rest come in
/// the next call (the client keeps asking while it gets a slice).
pub const DIFFERENCE_LIMIT: usize = 100;

pub fn state(world: &World, account: AccountId) -> tl::enums::updates::State {
    state_at(world.pts(account))
}

fn state_at(pts: i32) -> tl::enums::updates::State {
    tl::types::updates::State {
        pts,
        qts: 0,
        date: render::now(),
        seq: 0,
        unread_count: 0,
    }
    .into()
}

/// The `user` objects for `accounts`, as `viewer` sees them.
pub fn users(
    world: &World,
    viewer: AccountId,
    accounts: impl IntoIterator<Item = AccountId>,
) -> Vec<tl::enums::User> {
    let unique: BTreeSet<AccountId> = accounts.into_iter().collect();
    unique
        .into_iter()
        .filter_map(|id| world.profile(id))
        .map(|profile| render::user(profile, profile.id == world.bot.id, viewer))
        .collect()
}

pub fn new_message(message: &StoredMessage, viewer: AccountId, pts: i32) -> tl::enums::Update {
    tl::types::UpdateNewMessage {
        message: render::message(message, viewer),
        pts,
        pts_count: 1,
    }
    .into()
}

pub fn edit_message(message: &StoredMessage, viewer: AccountId, pts: i32) -> tl::enums::Update {
    tl::types::UpdateEditMessage {
        message: render::message(message, viewer),
        pts,
        pts_count: 1,
    }
    .into()
}

pub fn message_id(id: i32, random_id: i64) -> tl::enums::Update {
    tl::types::UpdateMessageId { id, random_id }.into()
}

/// An `updates` container with the users it mentions.
pub fn container(
    world: &World,
    viewer: AccountId,
    updates: Vec<tl::enums::Update>,
    mentioned: impl IntoIterator<Item = AccountId>,
) -> tl::enums::Updates {
    tl::types::Updates {
        updates,
        users: users(world, viewer, mentioned),
        chats: Vec::new(),
        date: render::now(),
        seq: 0,
    }
    .into()
}

/// Pushes one update to `viewer` (as an `updates` container naming the two
/// sides of the chat), skipping the connection with `except_key`.
pub fn deliver_update(
    outbox: &Outbox,
    world: &World,
    viewer: AccountId,
    update: tl::enums::Update,
    chat: [AccountId; 2],
    except_key: Option<i64>,
) -> usize {
    let updates = container(world, viewer, vec![update], chat);
    deliver(outbox, world, viewer, except_key, &updates)
}

/// Pushes `updates` to every connection signed in as `account`, except the
/// one using `except_key` (it gets them as its RPC result). Returns how many
/// connections took them.
pub fn deliver(
    outbox: &Outbox,
    world: &World,
    account: AccountId,
    except_key: Option<i64>,
    updates: &tl::enums::Updates,
) -> usize {
    let bytes = updates.to_bytes();
    world
        .key_ids_of(account)
        .into_iter()
        .filter(|key| Some(*key) != except_key)
        .map(|key| outbox.push(key, &bytes))
        .sum()
}

/// `updates.getDifference` for `account` from `pts`: the box events after
/// it (new messages in `new_messages`, edits in `other_updates`), plus
/// `extra` updates that have no pts (e.g. callback queries nobody got).
pub fn difference(
    world: &World,
    account: AccountId,
    pts: i32,
    extra: Vec<tl::enums::Update>,
) -> tl::enums::updates::Difference {
    let update_box = world.boxes.get(&account);
    let current = world.pts(account);
    if pts > current {
        // The client is ahead of us (the sandbox lost state): resync it.
        return tl::types::updates::DifferenceTooLong { pts: current }.into();
    }
    let events = update_box.map_or(&[][..], |b| b.since(pts));
    if events.is_empty() && extra.is_empty() {
        return tl::types::updates::DifferenceEmpty {
            date: render::now(),
            seq: 0,
        }
        .into();
    }
    let (events, sliced) = if events.len() > DIFFERENCE_LIMIT {
        (&events[..DIFFERENCE_LIMIT], true)
    } else {
        (events, false)
    };

    let mut new_messages = Vec::new();
    let mut other_updates = extra;
    let mut mentioned = vec![account];
    for &(at, event) in events {
        let Some(message) = world.messages.get(&event.message_id()) else {
            continue;
        };
        mentioned.extend([message.from, message.to]);
        match event {
            BoxEvent::NewMessage(_) => new_messages.push(render::message(message, account)),
            BoxEvent::EditMessage(_) => other_updates.push(edit_message(message, account, at)),
        }
    }
    let users = users(world, account, mentioned);
    if sliced {
        let reached = events.last().map_or(pts, |(at, _)| *at);
        tl::types::updates::DifferenceSlice {
            new_messages,
            new_encrypted_messages: Vec::new(),
            other_updates,
            chats: Vec::new(),
            users,
            intermediate_state: state_at(reached),
        }
        .into()
    } else {
        tl::types::updates::Difference {
            new_messages,
            new_encrypted_messages: Vec::new(),
            other_updates,
            chats: Vec::new(),
            users,
            state: state_at(current),
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::telegram::world::BOT_ID;

    fn world_with(messages: usize) -> World {
        let mut world = World::new();
        world.users.insert(
            1_000_001,
            crate::sandbox::telegram::world::UserRecord {
                profile: crate::sandbox::telegram::accounts::Profile {
                    id: 1_000_001,
                    access_hash: 3,
                    first_name: "Ann".into(),
                    username: None,
                    phone: None,
                },
                chat: Default::default(),
            },
        );
        for i in 0..messages {
            world.insert_message(StoredMessage {
                id: 0,
                from: 1_000_001,
                to: BOT_ID,
                date: 1,
                text: format!("m{i}"),
                media: None,
                reply_markup: None,
                reply_to: None,
                edit_date: None,
                random_id: None,
            });
        }
        world
    }

    #[test]
    fn difference_returns_exactly_what_was_missed() {
        let mut world = world_with(5);
        world.record_edit(2);
        let tl::enums::updates::Difference::Difference(diff) =
            difference(&world, BOT_ID, 4, vec![])
        else {
            panic!("expected a full difference")
        };
        let texts: Vec<_> = diff
            .new_messages
            .iter()
            .map(|m| match m {
                tl::enums::Message::Message(m) => m.message.clone(),
                _ => panic!("empty message"),
            })
            .collect();
        assert_eq!(texts, ["m3", "m4"]);
        assert_eq!(diff.other_updates.len(), 1);
        assert!(matches!(&diff.other_updates[0],
            tl::enums::Update::EditMessage(u) if u.pts == 7 && u.pts_count == 1));
        let tl::enums::updates::State::State(state) = diff.state;
        assert_eq!(state.pts, 7);
        assert_eq!(diff.users.len(), 2);
    }

    #[test]
    fn nothing_missed_is_empty_and_ahead_is_too_long() {
        let world = world_with(3);
        assert!(matches!(
            difference(&world, BOT_ID, 4, vec![]),
            tl::enums::updates::Difference::Empty(_)
        ));
        assert!(matches!(
            difference(&world, BOT_ID, 9, vec![]),
            tl::enums::updates::Difference::TooLong(d) if d.pts == 4
        ));
    }

    #[test]
    fn long_differences_come_in_slices() {
        let world = world_with(DIFFERENCE_LIMIT + 5);
        let tl::enums::updates::Difference::Slice(slice) = difference(&world, BOT_ID, 1, vec![])
        else {
            panic!("expected a slice")
        };
        assert_eq!(slice.new_messages.len(), DIFFERENCE_LIMIT);
        let tl::enums::updates::State::State(state) = slice.intermediate_state;
        let tl::enums::updates::Difference::Difference(rest) =
            difference(&world, BOT_ID, state.pts, vec![])
        else {
            panic!("expected the rest")
        };
        assert_eq!(rest.new_messages.len(), 5);
    }
}
