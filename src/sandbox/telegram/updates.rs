//! Updates: what an account is told, pushed live or fetched with
//! `updates.getDifference` and `updates.getChannelDifference`.
//!
//! Every change to a box has its `pts` (or `qts`), so a client that missed
//! pushes (offline, dropped connection) gets exactly the missed events from
//! a difference, in slices of [`DifferenceRules::slice`], and one too far
//! behind is told to start over. Each `updates` of common-box events pushed
//! to an account carries the next `seq` of that account, so a client that
//! lost one sees the gap at the next; the rest carry 0: channel updates
//! (their own pts), updates without pts, and a push that leaves out the
//! caller's own connection (the caller got it as its RPC result).

use std::collections::BTreeSet;

use grammers_tl_types as tl;
use grammers_tl_types::Serializable;
use serde::Serialize;

use super::accounts::AccountId;
use super::boxes::{BoxEvent, DifferenceRules, Owed, UpdateBox};
use super::render;
use super::world::{GroupKind, Place, StoredMessage, World};
use crate::sandbox::Outbox;

/// What kind of difference was served, for `GET /stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    Empty,
    Difference,
    Slice,
    TooLong,
    ChannelEmpty,
    ChannelDifference,
    ChannelTooLong,
}

impl Served {
    pub fn name(self) -> &'static str {
        match self {
            Served::Empty => "differenceEmpty",
            Served::Difference => "difference",
            Served::Slice => "differenceSlice",
            Served::TooLong => "differenceTooLong",
            Served::ChannelEmpty => "channelDifferenceEmpty",
            Served::ChannelDifference => "channelDifference",
            Served::ChannelTooLong => "channelDifferenceTooLong",
        }
    }
}

pub fn state(world: &World, account: AccountId) -> tl::enums::updates::State {
    state_at(world, account, world.pts(account), world.qts(account))
}

fn state_at(world: &World, account: AccountId, pts: i32, qts: i32) -> tl::enums::updates::State {
    tl::types::updates::State {
        pts,
        qts,
        date: render::now(),
        seq: world.seq(account),
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
        .map(|profile| render::user(profile, world.is_bot(profile.id), viewer))
        .collect()
}

/// The `chat`/`channel` objects for groups, as `viewer` sees them.
pub fn chats(
    world: &World,
    viewer: AccountId,
    groups: impl IntoIterator<Item = i64>,
) -> Vec<tl::enums::Chat> {
    let unique: BTreeSet<i64> = groups.into_iter().collect();
    unique
        .into_iter()
        .filter_map(|id| world.groups.get(&id))
        .map(|group| render::chat(group, viewer))
        .collect()
}

/// Updates to send together, with the peers they mention.
#[derive(Debug, Default)]
pub struct Batch {
    pub updates: Vec<tl::enums::Update>,
    pub users: BTreeSet<AccountId>,
    pub chats: BTreeSet<i64>,
    /// Channel boxes whose pts this batch hands over.
    channels: Vec<(i64, i32)>,
    /// It carries common-box (pts or qts) events.
    sequenced: bool,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds the peers of `message`.
    pub fn mention(&mut self, message: &StoredMessage) {
        self.users.insert(message.from);
        if message.to != 0 {
            self.users.insert(message.to);
        }
        self.chats.extend(message.chat);
    }

    pub fn push(&mut self, update: tl::enums::Update) {
        self.updates.push(update);
    }

    /// Adds the update for a box event as `viewer` sees it (nothing if its
    /// message is gone).
    pub fn event(
        &mut self,
        world: &World,
        viewer: AccountId,
        place: Place,
        pts: i32,
        event: &BoxEvent,
    ) {
        match place {
            Place::Channel(channel) => {
                self.channels.push((channel, pts));
                self.chats.insert(channel);
            }
            Place::Common => self.sequenced = true,
        }
        if let Some(update) = render_event(world, viewer, place, pts, event, self) {
            self.updates.push(update);
        }
    }

    /// As an `updates` container with `seq`.
    pub fn container(&self, world: &World, viewer: AccountId, seq: i32) -> tl::enums::Updates {
        tl::types::Updates {
            updates: self.updates.clone(),
            users: users(world, viewer, self.users.iter().copied().chain([viewer])),
            chats: chats(world, viewer, self.chats.iter().copied()),
            date: render::now(),
            seq,
        }
        .into()
    }
}

/// The update for one box event, as `viewer` sees it.
fn render_event(
    world: &World,
    viewer: AccountId,
    place: Place,
    pts: i32,
    event: &BoxEvent,
    batch: &mut Batch,
) -> Option<tl::enums::Update> {
    let count = event.count();
    Some(match (event, place) {
        (BoxEvent::NewMessage { message_id }, _) => {
            let message = world.message(place, *message_id)?;
            batch.mention(message);
            new_message(message, viewer, pts)
        }
        (BoxEvent::EditMessage { message_id }, _) => {
            let message = world.message(place, *message_id)?;
            batch.mention(message);
            edit_message(message, viewer, pts)
        }
        (BoxEvent::DeleteMessages { message_ids }, Place::Common) => {
            tl::types::UpdateDeleteMessages {
                messages: message_ids.clone(),
                pts,
                pts_count: count,
            }
            .into()
        }
        (BoxEvent::DeleteMessages { message_ids }, Place::Channel(channel_id)) => {
            tl::types::UpdateDeleteChannelMessages {
                channel_id,
                messages: message_ids.clone(),
                pts,
                pts_count: count,
            }
            .into()
        }
        (
            BoxEvent::BotStopped {
                user_id,
                stopped,
                date,
            },
            _,
        ) => {
            batch.users.insert(*user_id);
            tl::types::UpdateBotStopped {
                user_id: *user_id,
                date: *date,
                stopped: *stopped,
                qts: pts,
            }
            .into()
        }
        (
            BoxEvent::Reaction {
                group,
                message_id,
                user_id,
                old,
                new,
                date,
            },
            _,
        ) => {
            batch.users.insert(*user_id);
            let peer = match group.and_then(|id| world.groups.get(&id)) {
                None => render::peer_user(*user_id),
                Some(record) => {
                    batch.chats.insert(record.id);
                    if record.kind.is_channel() {
                        render::peer_channel(record.id)
                    } else {
                        tl::types::PeerChat { chat_id: record.id }.into()
                    }
                }
            };
            let reactions = |emoji: &[String]| -> Vec<tl::enums::Reaction> {
                emoji
                    .iter()
                    .map(|e| {
                        tl::types::ReactionEmoji {
                            emoticon: e.clone(),
                        }
                        .into()
                    })
                    .collect()
            };
            tl::types::UpdateBotMessageReaction {
                peer,
                msg_id: *message_id,
                date: *date,
                actor: render::peer_user(*user_id),
                old_reactions: reactions(old),
                new_reactions: reactions(new),
                qts: pts,
            }
            .into()
        }
        (
            BoxEvent::Participant {
                group,
                user_id,
                actor,
                prev,
                new,
                date,
            },
            _,
        ) => {
            let record = world.groups.get(group)?;
            batch.users.extend([*user_id, *actor]);
            batch.chats.insert(*group);
            if record.kind == GroupKind::Group {
                let participant = |role: &Option<_>| {
                    role.and_then(|r| render::chat_participant(*user_id, r, *date, *actor))
                };
                tl::types::UpdateChatParticipant {
                    chat_id: *group,
                    date: *date,
                    actor_id: *actor,
                    user_id: *user_id,
                    prev_participant: participant(prev),
                    new_participant: participant(new),
                    invite: None,
                    qts: pts,
                }
                .into()
            } else {
                let participant = |role: &Option<_>| {
                    role.map(|r| render::channel_participant(*user_id, r, *date, *actor))
                };
                tl::types::UpdateChannelParticipant {
                    via_chatlist: false,
                    channel_id: *group,
                    date: *date,
                    actor_id: *actor,
                    user_id: *user_id,
                    prev_participant: participant(prev),
                    new_participant: participant(new),
                    invite: None,
                    qts: pts,
                }
                .into()
            }
        }
    })
}

pub fn new_message(message: &StoredMessage, viewer: AccountId, pts: i32) -> tl::enums::Update {
    let (message, channel) = (render::message(message, viewer), message.in_channel);
    if channel {
        tl::types::UpdateNewChannelMessage {
            message,
            pts,
            pts_count: 1,
        }
        .into()
    } else {
        tl::types::UpdateNewMessage {
            message,
            pts,
            pts_count: 1,
        }
        .into()
    }
}

pub fn edit_message(message: &StoredMessage, viewer: AccountId, pts: i32) -> tl::enums::Update {
    let (message, channel) = (render::message(message, viewer), message.in_channel);
    if channel {
        tl::types::UpdateEditChannelMessage {
            message,
            pts,
            pts_count: 1,
        }
        .into()
    } else {
        tl::types::UpdateEditMessage {
            message,
            pts,
            pts_count: 1,
        }
        .into()
    }
}

pub fn message_id(id: i32, random_id: i64) -> tl::enums::Update {
    tl::types::UpdateMessageId { id, random_id }.into()
}

/// Pushes `batch` to every connection signed in as `account`, except the
/// one using `except_key` (it gets the batch as its RPC result). Returns how
/// many connections took it.
pub fn deliver(
    outbox: &Outbox,
    world: &mut World,
    account: AccountId,
    except_key: Option<i64>,
    batch: &Batch,
) -> usize {
    // Only the common sequence is numbered: channel updates have their own
    // pts and travel with seq 0, as do updates without pts (a client that
    // loses one of those to a seq gap could not get it back).
    let seq = if except_key.is_none() && batch.sequenced && batch.channels.is_empty() {
        let seq = world.seqs.entry(account).or_insert(0);
        *seq += 1;
        *seq
    } else {
        0
    };
    let bytes = batch.container(world, account, seq).to_bytes();
    let taken: usize = world
        .key_ids_of(account)
        .into_iter()
        .filter(|key| Some(*key) != except_key)
        .map(|key| outbox.push(key, &bytes))
        .sum();
    if taken > 0 || except_key.is_some() {
        for &(channel, pts) in &batch.channels {
            world
                .update_box(account, Place::Channel(channel))
                .deliver(pts);
        }
    }
    taken
}

/// Pushes each account the update of what it got in `place` (`pts` as
/// [`World::insert_message`] and friends return them), the caller's
/// connection excepted.
pub fn deliver_each(
    outbox: &Outbox,
    world: &mut World,
    place: Place,
    event: &BoxEvent,
    pts: &[(AccountId, i32)],
    caller: Option<(AccountId, i64)>,
) {
    for &(account, at) in pts {
        let mut batch = Batch::new();
        batch.event(world, account, place, at, event);
        let except = caller
            .filter(|(who, _)| *who == account)
            .map(|(_, key)| key);
        deliver(outbox, world, account, except, &batch);
    }
}

/// A client's position in its common and secondary boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub pts: i32,
    pub qts: i32,
}

/// `updates.getDifference` for `account` from `from`: the common box's
/// events (new messages in `new_messages`, the rest in `other_updates`),
/// the secondary box's, `extra` updates that have no pts (callback queries
/// nobody got), and a hint for each channel with news.
pub fn difference(
    world: &World,
    account: AccountId,
    from: Position,
    rules: DifferenceRules,
    extra: Vec<tl::enums::Update>,
) -> (tl::enums::updates::Difference, Served) {
    let empty = UpdateBox::default();
    let common = world.boxes.get(&account).unwrap_or(&empty);
    let (common_events, pts, common_last) = match common.owed(from.pts, rules) {
        Owed::TooLong { pts } => {
            return (
                tl::types::updates::DifferenceTooLong { pts }.into(),
                Served::TooLong,
            );
        }
        Owed::Nothing => (&[][..], common.pts, true),
        Owed::Events {
            events,
            reached,
            last,
        } => (events, reached, last),
    };
    let secondary = world.qts_boxes.get(&account).unwrap_or(&empty);
    // A client that never had a qts (0) or is too far behind starts at the
    // current one, as Telegram drops qts backlogs.
    let (qts_events, qts, qts_last) = match secondary.owed(from.qts, rules) {
        _ if from.qts <= 0 => (&[][..], secondary.pts, true),
        Owed::TooLong { pts } => (&[][..], pts, true),
        Owed::Nothing => (&[][..], secondary.pts, true),
        Owed::Events {
            events,
            reached,
            last,
        } => (events, reached, last),
    };
    let last = common_last && qts_last;
    let hints = if last {
        channel_hints(world, account)
    } else {
        Vec::new()
    };
    if common_events.is_empty() && qts_events.is_empty() && extra.is_empty() && hints.is_empty() {
        let empty = tl::types::updates::DifferenceEmpty {
            date: render::now(),
            seq: world.seq(account),
        };
        return (empty.into(), Served::Empty);
    }

    let mut batch = Batch::new();
    let mut new_messages = Vec::new();
    for (at, event) in common_events {
        match event {
            BoxEvent::NewMessage { message_id } => {
                if let Some(message) = world.messages.get(message_id) {
                    batch.mention(message);
                    new_messages.push(render::message(message, account));
                }
            }
            other => batch.event(world, account, Place::Common, *at, other),
        }
    }
    for (at, event) in qts_events {
        batch.event(world, account, Place::Common, *at, event);
    }
    batch.updates.extend(extra);
    batch.updates.extend(hints);
    batch.users.insert(account);
    let state = state_at(world, account, pts, qts);
    let users = users(world, account, batch.users.iter().copied());
    let chats = chats(world, account, batch.chats.iter().copied());
    if last {
        let difference = tl::types::updates::Difference {
            new_messages,
            new_encrypted_messages: Vec::new(),
            other_updates: batch.updates,
            chats,
            users,
            state,
        };
        (difference.into(), Served::Difference)
    } else {
        let slice = tl::types::updates::DifferenceSlice {
            new_messages,
            new_encrypted_messages: Vec::new(),
            other_updates: batch.updates,
            chats,
            users,
            intermediate_state: state,
        };
        (slice.into(), Served::Slice)
    }
}

/// `updateChannelTooLong` for each channel `account` is in whose box has
/// more than it was handed: with the pts it joined at if it was never handed
/// anything from it (so a client that never heard of the channel starts
/// there), else without (a client fetches from the pts it has).
fn channel_hints(world: &World, account: AccountId) -> Vec<tl::enums::Update> {
    let Some(boxes) = world.channel_boxes.get(&account) else {
        return Vec::new();
    };
    boxes
        .iter()
        .filter(|(channel, b)| {
            b.pts > b.delivered.max(b.joined_at)
                && world
                    .groups
                    .get(channel)
                    .is_some_and(|g| g.is_member(account))
        })
        .map(|(channel, b)| {
            tl::types::UpdateChannelTooLong {
                channel_id: *channel,
                pts: (b.delivered == 0).then_some(b.joined_at),
            }
            .into()
        })
        .collect()
}

/// `updates.getChannelDifference` for `account` in `channel` from `pts`
/// (at most `limit` events, and at most the rules' slice).
pub fn channel_difference(
    world: &mut World,
    account: AccountId,
    channel: i64,
    pts: i32,
    limit: usize,
    rules: DifferenceRules,
) -> (tl::enums::updates::ChannelDifference, Served) {
    let rules = DifferenceRules {
        slice: rules.slice.min(limit.max(1)),
        ..rules
    };
    let place = Place::Channel(channel);
    let b = world.update_box(account, place).clone();
    let owed = b.owed(pts, rules);
    let (events, reached, last) = match owed {
        Owed::Nothing => {
            world.update_box(account, place).deliver(b.pts);
            let empty = tl::types::updates::ChannelDifferenceEmpty {
                r#final: true,
                pts: b.pts,
                timeout: None,
            };
            return (empty.into(), Served::ChannelEmpty);
        }
        Owed::TooLong { pts } => {
            world.update_box(account, place).deliver(pts);
            return (
                too_long(world, account, channel, pts),
                Served::ChannelTooLong,
            );
        }
        Owed::Events {
            events,
            reached,
            last,
        } => (events, reached, last),
    };
    let mut batch = Batch::new();
    let mut new_messages = Vec::new();
    for (at, event) in events {
        match event {
            BoxEvent::NewMessage { message_id } => {
                if let Some(message) = world.message(place, *message_id) {
                    batch.mention(message);
                    new_messages.push(render::message(message, account));
                }
            }
            other => batch.event(world, account, place, *at, other),
        }
    }
    batch.chats.insert(channel);
    batch.users.insert(account);
    let difference = tl::types::updates::ChannelDifference {
        r#final: last,
        pts: reached,
        timeout: None,
        new_messages,
        other_updates: batch.updates,
        chats: chats(world, account, batch.chats.iter().copied()),
        users: users(world, account, batch.users.iter().copied()),
    };
    world.update_box(account, place).deliver(reached);
    (difference.into(), Served::ChannelDifference)
}

/// `channelDifferenceTooLong`: the channel's dialog at `pts` and its latest
/// messages; the client starts over from there.
fn too_long(
    world: &World,
    account: AccountId,
    channel: i64,
    pts: i32,
) -> tl::enums::updates::ChannelDifference {
    let recent: Vec<&StoredMessage> = world
        .groups
        .get(&channel)
        .map(|g| g.messages.values().rev().take(10).collect())
        .unwrap_or_default();
    let top = recent.first().map_or(0, |m| m.id);
    let mut batch = Batch::new();
    for message in &recent {
        batch.mention(message);
    }
    batch.chats.insert(channel);
    tl::types::updates::ChannelDifferenceTooLong {
        r#final: true,
        timeout: None,
        dialog: tl::types::Dialog {
            pinned: false,
            unread_mark: false,
            view_forum_as_messages: false,
            peer: render::peer_channel(channel),
            top_message: top,
            read_inbox_max_id: top,
            read_outbox_max_id: top,
            unread_count: 0,
            unread_mentions_count: 0,
            unread_reactions_count: 0,
            unread_poll_votes_count: 0,
            notify_settings: tl::types::PeerNotifySettings {
                show_previews: None,
                silent: None,
                mute_until: None,
                ios_sound: None,
                android_sound: None,
                other_sound: None,
                stories_muted: None,
                stories_hide_sender: None,
                stories_ios_sound: None,
                stories_android_sound: None,
                stories_other_sound: None,
            }
            .into(),
            pts: Some(pts),
            draft: None,
            folder_id: None,
            ttl_period: None,
        }
        .into(),
        messages: recent.iter().map(|m| render::message(m, account)).collect(),
        chats: chats(world, account, batch.chats.iter().copied()),
        users: users(world, account, batch.users.iter().copied()),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::telegram::accounts::Profile;
    use crate::sandbox::telegram::world::{BOT_ID, UserRecord};

    const ANN: AccountId = 1_000_001;

    fn world_with(messages: usize) -> World {
        let mut world = World::new();
        world.users.insert(
            ANN,
            UserRecord::new(Profile {
                id: ANN,
                access_hash: 3,
                first_name: "Ann".into(),
                username: None,
                phone: None,
                lang_code: None,
                last_name: None,
                premium: false,
            }),
        );
        for i in 0..messages {
            world.insert_message(StoredMessage {
                from: ANN,
                to: BOT_ID,
                date: 1,
                text: format!("m{i}"),
                ..StoredMessage::default()
            });
        }
        world
    }

    fn at(pts: i32) -> Position {
        Position { pts, qts: 1 }
    }

    fn texts(messages: &[tl::enums::Message]) -> Vec<String> {
        messages
            .iter()
            .map(|m| match m {
                tl::enums::Message::Message(m) => m.message.clone(),
                _ => panic!("not a message"),
            })
            .collect()
    }

    #[test]
    fn difference_returns_exactly_what_was_missed() {
        let mut world = world_with(5);
        let mut edited = world.messages[&2].clone();
        edited.text = "edited".into();
        world.record_edit(Place::Common, edited);
        world.qts_box(BOT_ID).record(BoxEvent::BotStopped {
            user_id: ANN,
            stopped: true,
            date: 1,
        });
        let rules = DifferenceRules::default();
        let (tl::enums::updates::Difference::Difference(diff), Served::Difference) =
            difference(&world, BOT_ID, at(4), rules, vec![])
        else {
            panic!("expected a full difference")
        };
        assert_eq!(texts(&diff.new_messages), ["m3", "m4"]);
        assert_eq!(diff.other_updates.len(), 2);
        assert!(matches!(&diff.other_updates[0],
            tl::enums::Update::EditMessage(u) if u.pts == 7 && u.pts_count == 1));
        assert!(matches!(&diff.other_updates[1],
            tl::enums::Update::BotStopped(u) if u.qts == 2 && u.stopped && u.user_id == ANN));
        let tl::enums::updates::State::State(state) = diff.state;
        assert_eq!((state.pts, state.qts), (7, 2));
        assert_eq!(diff.users.len(), 2);
    }

    #[test]
    fn nothing_missed_is_empty_and_ahead_is_too_long() {
        let world = world_with(3);
        let rules = DifferenceRules::default();
        assert!(matches!(
            difference(&world, BOT_ID, at(4), rules, vec![]),
            (tl::enums::updates::Difference::Empty(_), Served::Empty)
        ));
        assert!(matches!(
            difference(&world, BOT_ID, at(9), rules, vec![]),
            (tl::enums::updates::Difference::TooLong(d), Served::TooLong) if d.pts == 4
        ));
    }

    #[test]
    fn long_differences_come_in_slices_with_the_intermediate_state() {
        let world = world_with(105);
        let rules = DifferenceRules {
            slice: 100,
            too_long: 1000,
        };
        let (tl::enums::updates::Difference::Slice(slice), Served::Slice) =
            difference(&world, BOT_ID, at(1), rules, vec![])
        else {
            panic!("expected a slice")
        };
        assert_eq!(slice.new_messages.len(), 100);
        let tl::enums::updates::State::State(state) = slice.intermediate_state;
        assert_eq!(state.pts, 101);
        let (tl::enums::updates::Difference::Difference(rest), _) =
            difference(&world, BOT_ID, at(state.pts), rules, vec![])
        else {
            panic!("expected the rest")
        };
        assert_eq!(
            texts(&rest.new_messages),
            ["m100", "m101", "m102", "m103", "m104"]
        );
        let tight = DifferenceRules {
            slice: 100,
            too_long: 50,
        };
        assert!(matches!(
            difference(&world, BOT_ID, at(1), tight, vec![]),
            (_, Served::TooLong)
        ));
    }
}
