//! Groups, supergroups and channels, as the control API plays them: create
//! one with members, post in it as a member, add, remove, ban, promote or
//! demote a bot, and read its history as a member sees it. Several bots
//! may be in one group; each sees what its own privacy mode lets through.
//!
//! The control API names a group by its Bot API id (`-N` for a basic group,
//! `-100N` for a supergroup or channel); inside, groups are kept by their
//! bare id. Each change to the bot's membership is an `updateChatParticipant`
//! or `updateChannelParticipant` in the bot's qts box and, in groups and
//! supergroups, a service message.

use serde_json::{Value, json};

use super::accounts::AccountId;
use super::boxes::{BoxEvent, Role};
use super::sending::{Draft, Target, UserMessage};
use super::updates;
use super::users::message_json;
use super::world::{GroupKind, GroupRecord, Place, ServiceAction, World, bare_group_id};
use super::{FakeTelegram, Inner, SandboxError, render};

const MAX_TITLE: usize = 128;

/// A new group, as `POST /groups` describes it.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub title: String,
    pub kind: GroupKind,
    /// The users in it; the first one created it.
    pub members: Vec<AccountId>,
    /// The bot `bot_id`'s role from the start (`None`: not in it).
    pub bot: Option<Role>,
    pub bot_id: AccountId,
}

/// What `POST /groups/{id}/bot` does to the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotAction {
    Add,
    Remove,
    Ban,
    Promote,
    Demote,
}

/// The group a Bot API id names, if its form matches its kind.
pub(super) fn by_api_id(world: &World, api_id: i64) -> Result<&GroupRecord, SandboxError> {
    bare_group_id(api_id)
        .and_then(|id| world.groups.get(&id))
        .filter(|group| group.bot_api_id() == api_id)
        .ok_or(SandboxError::UnknownGroup(api_id))
}

impl Inner {
    /// Changes `bot`'s role in `group` and tells the bot: a participant
    /// update in its qts box, pushed.
    fn set_bot_role(
        &mut self,
        outbox: &crate::sandbox::Outbox,
        group: i64,
        bot: AccountId,
        actor: AccountId,
        new: Role,
    ) {
        let Some(record) = self.world.groups.get_mut(&group) else {
            return;
        };
        let prev = record.members.insert(bot, new);
        let is_channel = record.kind.is_channel();
        if is_channel && new.is_in() && !prev.is_some_and(Role::is_in) {
            // The bot's view of the channel starts where the channel is now.
            let b = self.world.update_box(bot, Place::Channel(group));
            b.joined_at = b.pts;
        }
        let event = BoxEvent::Participant {
            group,
            user_id: bot,
            actor,
            prev,
            new: Some(new),
            date: render::now(),
        };
        self.tell_bot(outbox, bot, event);
    }

    /// Records `event` in `bot`'s qts box and pushes it.
    pub(super) fn tell_bot(
        &mut self,
        outbox: &crate::sandbox::Outbox,
        bot: AccountId,
        event: BoxEvent,
    ) {
        let qts = self.world.qts_box(bot).record(event.clone());
        let mut batch = updates::Batch::new();
        batch.event(&self.world, bot, Place::Common, qts, &event);
        updates::deliver(outbox, &mut self.world, bot, None, &batch);
    }

    /// Posts a service message in `group` in `actor`'s name.
    fn service(
        &mut self,
        outbox: &crate::sandbox::Outbox,
        group: i64,
        actor: AccountId,
        action: ServiceAction,
    ) {
        let draft = Draft {
            action: Some(action),
            ..Draft::default()
        };
        self.post(outbox, actor, Target::Group(group), draft, None);
    }
}

impl FakeTelegram {
    /// Creates a group; returns its Bot API id.
    pub fn create_group(&self, new: NewGroup) -> Result<i64, SandboxError> {
        let title = new.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(SandboxError::invalid(
                "title",
                format!("must be 1..{MAX_TITLE} characters"),
            ));
        }
        let Some(&creator) = new.members.first() else {
            return Err(SandboxError::invalid(
                "members",
                "must name at least one user (the first creates the group)",
            ));
        };
        if new
            .bot
            .is_some_and(|role| !role.is_in() || role == Role::Creator)
        {
            return Err(SandboxError::invalid(
                "bot",
                "must be none, member or admin",
            ));
        }
        let mut inner = self.lock();
        if new.bot.is_some() && !inner.world.is_bot(new.bot_id) {
            return Err(SandboxError::UnknownBot(new.bot_id));
        }
        if let Some(unknown) = new
            .members
            .iter()
            .find(|id| !inner.world.users.contains_key(id))
        {
            return Err(SandboxError::UnknownUser(*unknown));
        }
        let world = &mut inner.world;
        let id = world.next_group_id;
        world.next_group_id += 1;
        let mut members = std::collections::BTreeMap::new();
        for &member in &new.members {
            members.entry(member).or_insert(Role::Member);
        }
        members.insert(creator, Role::Creator);
        let record = GroupRecord {
            id,
            kind: new.kind,
            title: title.to_owned(),
            access_hash: rand::random(),
            date: render::now(),
            members,
            messages: Default::default(),
            next_message_id: 1,
        };
        let api_id = record.bot_api_id();
        world.groups.insert(id, record);
        let outbox = &self.0.outbox;
        if new.kind != GroupKind::Channel {
            inner.service(
                outbox,
                id,
                creator,
                ServiceAction::ChatCreate {
                    title: title.to_owned(),
                },
            );
        }
        if let Some(role) = new.bot {
            let bot = new.bot_id;
            inner.set_bot_role(outbox, id, bot, creator, role);
            if new.kind != GroupKind::Channel {
                inner.service(outbox, id, creator, ServiceAction::AddUser { user_id: bot });
            }
        }
        drop(inner);
        self.changed();
        Ok(api_id)
    }

    /// `from` posts in the group `api_id`; returns the message id.
    pub fn group_sends(
        &self,
        api_id: i64,
        from: AccountId,
        message: UserMessage,
        reply_to: Option<i32>,
    ) -> Result<i32, SandboxError> {
        let mut inner = self.lock();
        let group = by_api_id(&inner.world, api_id)?.id;
        if !inner.world.users.contains_key(&from) {
            return Err(SandboxError::UnknownUser(from));
        }
        if let Some(reply) = reply_to
            && inner.find(Target::Group(group), reply).is_none()
        {
            return Err(SandboxError::UnknownGroupMessage {
                group_id: api_id,
                message_id: reply,
            });
        }
        let draft = message.into_draft(from, reply_to);
        let posted =
            inner.post_from_user(&self.0.outbox, from, Target::Group(group), draft, None)?;
        drop(inner);
        self.changed();
        Ok(posted.message.id)
    }

    /// `from` edits its message in the group `api_id`.
    pub fn group_edits(
        &self,
        api_id: i64,
        from: AccountId,
        message_id: i32,
        text: String,
    ) -> Result<(), SandboxError> {
        let group = by_api_id(&self.lock().world, api_id)?.id;
        let target = Target::Group(group);
        self.user_changes(from, target, message_id, |inner, outbox| {
            let edit = super::sending::Edit {
                text: Some(text),
                ..Default::default()
            };
            inner
                .edit(outbox, from, target, message_id, edit, None)
                .map(|_| ())
        })
    }

    /// `from` deletes a message in the group `api_id`.
    pub fn group_deletes(
        &self,
        api_id: i64,
        from: AccountId,
        message_id: i32,
    ) -> Result<(), SandboxError> {
        let record = by_api_id(&self.lock().world, api_id)?.clone();
        let place = if record.kind.is_channel() {
            Place::Channel(record.id)
        } else {
            Place::Common
        };
        self.user_changes(
            from,
            Target::Group(record.id),
            message_id,
            |inner, outbox| {
                inner
                    .delete(outbox, from, place, &[message_id], None)
                    .map(|_| ())
            },
        )
    }

    /// Does `action` to `bot` in the group `api_id`, in the creator's
    /// name; returns the bot's role now.
    pub fn bot_action(
        &self,
        api_id: i64,
        bot: AccountId,
        action: BotAction,
    ) -> Result<Option<Role>, SandboxError> {
        let mut inner = self.lock();
        if !inner.world.is_bot(bot) {
            return Err(SandboxError::UnknownBot(bot));
        }
        let record = by_api_id(&inner.world, api_id)?;
        let (group, kind) = (record.id, record.kind);
        let role = record.role(bot);
        let creator = record
            .members
            .iter()
            .find(|(_, r)| **r == Role::Creator)
            .map_or(bot, |(id, _)| *id);
        let in_it = role.is_some_and(Role::is_in);
        let refuse = |rule: &str| Err(SandboxError::invalid("action", rule.to_owned()));
        let new = match action {
            BotAction::Add if in_it => return refuse("the bot is already in the group"),
            BotAction::Add if kind == GroupKind::Channel => Role::Admin,
            BotAction::Add => Role::Member,
            BotAction::Remove if !in_it => return refuse("the bot is not in the group"),
            BotAction::Remove => Role::Left,
            BotAction::Ban if role == Some(Role::Banned) => {
                return refuse("the bot is already banned");
            }
            BotAction::Ban => Role::Banned,
            BotAction::Promote if !in_it => return refuse("the bot is not in the group"),
            BotAction::Promote if role == Some(Role::Admin) => {
                return refuse("the bot is already an admin");
            }
            BotAction::Promote => Role::Admin,
            BotAction::Demote if role != Some(Role::Admin) => {
                return refuse("the bot is not an admin");
            }
            BotAction::Demote if kind == GroupKind::Channel => {
                return refuse("a bot in a channel must be an admin: remove it instead");
            }
            BotAction::Demote => Role::Member,
        };
        let outbox = &self.0.outbox;
        let with_service = kind != GroupKind::Channel;
        if with_service && in_it && !new.is_in() {
            // The bot sees the message about its own removal.
            inner.service(
                outbox,
                group,
                creator,
                ServiceAction::DeleteUser { user_id: bot },
            );
        }
        inner.set_bot_role(outbox, group, bot, creator, new);
        if with_service && !in_it && new.is_in() {
            inner.service(
                outbox,
                group,
                creator,
                ServiceAction::AddUser { user_id: bot },
            );
        }
        drop(inner);
        self.changed();
        Ok(Some(new))
    }

    /// Turns `bot`'s privacy mode on (it sees only commands, mentions and
    /// replies in groups where it is not admin) or off.
    pub fn set_privacy(&self, bot: AccountId, on: bool) -> Result<(), SandboxError> {
        let mut inner = self.lock();
        let record = inner
            .world
            .bot_mut(bot)
            .ok_or(SandboxError::UnknownBot(bot))?;
        record.privacy = on;
        drop(inner);
        self.changed();
        Ok(())
    }

    pub fn privacy(&self, bot: AccountId) -> Result<bool, SandboxError> {
        let inner = self.lock();
        let record = inner.world.bot(bot).ok_or(SandboxError::UnknownBot(bot))?;
        Ok(record.privacy)
    }

    /// The group `api_id` as a member sees it: the users in it, `bot`'s role
    /// (and every bot's), and every message.
    pub fn group_chat(&self, api_id: i64, bot: AccountId) -> Result<Value, SandboxError> {
        let inner = self.lock();
        let world = &inner.world;
        let group = by_api_id(world, api_id)?;
        let privacy = world.bot(bot).ok_or(SandboxError::UnknownBot(bot))?.privacy;
        let (bots, members): (Vec<_>, Vec<_>) =
            group.members.iter().partition(|(id, _)| world.is_bot(**id));
        let members: Vec<Value> = members
            .into_iter()
            .map(|(id, role)| json!({"user_id": id, "role": role}))
            .collect();
        let bots: Vec<Value> = bots
            .into_iter()
            .map(|(id, role)| json!({"bot_id": id, "role": role}))
            .collect();
        let messages: Vec<Value> = world
            .group_messages(group)
            .into_iter()
            .map(|m| message_json(m, world))
            .collect();
        let typing = inner
            .typing
            .iter()
            .filter(|((_, chat), _)| *chat == -group.id)
            .map(|(_, typing)| *typing)
            .max_by_key(|typing| typing.date);
        Ok(json!({
            "id": api_id,
            "kind": group.kind,
            "title": group.title,
            "members": members,
            "bot": group.role(bot),
            "bots": bots,
            "privacy": privacy,
            "typing": typing,
            "messages": messages,
        }))
    }

    /// The groups, for `GET /groups`, with `bot`'s role in each.
    pub fn groups(&self, bot: AccountId) -> Vec<Value> {
        let inner = self.lock();
        inner
            .world
            .groups
            .values()
            .map(|g| {
                json!({
                    "id": g.bot_api_id(),
                    "kind": g.kind,
                    "title": g.title,
                    "bot": g.role(bot),
                })
            })
            .collect()
    }
}
