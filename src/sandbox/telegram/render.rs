//! How the world looks on the wire: TL objects built from stored records.
//!
//! Telegram's constructors have dozens of optional fields; building them in
//! one place keeps the RPC handlers short and makes sure every object the
//! sandbox sends is one a real client would accept (e.g. a bot `user` must
//! carry `bot_info_version`, since it shares its flag bit with `bot`).

use std::net::SocketAddrV4;

use grammers_tl_types as tl;
use grammers_tl_types::Deserializable;

use super::accounts::{AccountId, Profile};
use super::boxes::Role;
use super::files;
use super::world::{GroupKind, GroupRecord, ServiceAction, ShownAs, StoredMedia, StoredMessage};

/// The DC id the sandbox claims to be (grammers' default home DC).
pub const DC_ID: i32 = 2;

pub fn now() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i32::try_from(secs).unwrap_or(i32::MAX)
}

pub fn peer_user(id: AccountId) -> tl::enums::Peer {
    tl::types::PeerUser { user_id: id }.into()
}

/// A `user` object for `profile` as `viewer` sees it.
pub fn user(profile: &Profile, is_bot: bool, viewer: AccountId) -> tl::enums::User {
    tl::types::User {
        is_self: profile.id == viewer,
        contact: false,
        mutual_contact: false,
        deleted: false,
        bot: is_bot,
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: profile.premium,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: false,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id: profile.id,
        access_hash: Some(profile.access_hash),
        first_name: Some(profile.first_name.clone()),
        last_name: profile.last_name.clone(),
        username: profile.username.clone(),
        phone: profile.phone.clone().filter(|_| profile.id == viewer),
        photo: None,
        status: None,
        bot_info_version: is_bot.then_some(1),
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: profile.lang_code.clone(),
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
    .into()
}

/// Where a stored message is, as a `Peer` seen by `viewer`.
pub fn message_peer(stored: &StoredMessage, viewer: AccountId) -> tl::enums::Peer {
    match stored.chat {
        Some(id) if stored.in_channel => peer_channel(id),
        Some(id) => tl::types::PeerChat { chat_id: id }.into(),
        None => peer_user(stored.peer_of(viewer)),
    }
}

pub fn peer_channel(id: i64) -> tl::enums::Peer {
    tl::types::PeerChannel { channel_id: id }.into()
}

/// The entities a message was stored with.
pub fn entities(stored: &StoredMessage) -> Option<Vec<tl::enums::MessageEntity>> {
    stored
        .entities
        .as_deref()
        .and_then(|bytes| Vec::<tl::enums::MessageEntity>::from_bytes(bytes).ok())
}

/// A stored message as `viewer` (one who has it in its box) sees it.
pub fn message(stored: &StoredMessage, viewer: AccountId) -> tl::enums::Message {
    if let Some(action) = &stored.action {
        return tl::types::MessageService {
            out: stored.from == viewer,
            mentioned: false,
            media_unread: false,
            reactions_are_possible: false,
            silent: stored.silent,
            post: false,
            legacy: false,
            id: stored.id,
            from_id: Some(peer_user(stored.from)),
            peer_id: message_peer(stored, viewer),
            saved_peer_id: None,
            reply_to: None,
            date: stored.date,
            action: service_action(action),
            reactions: None,
            ttl_period: None,
        }
        .into();
    }
    tl::types::Message {
        out: stored.from == viewer,
        mentioned: false,
        media_unread: false,
        silent: stored.silent,
        post: false,
        from_scheduled: false,
        legacy: false,
        edit_hide: false,
        pinned: false,
        noforwards: stored.noforwards,
        invert_media: false,
        offline: false,
        video_processing_pending: false,
        paid_suggested_post_stars: false,
        paid_suggested_post_ton: false,
        id: stored.id,
        from_id: Some(peer_user(stored.from)),
        from_boosts_applied: None,
        from_rank: None,
        peer_id: message_peer(stored, viewer),
        saved_peer_id: None,
        fwd_from: None,
        via_bot_id: None,
        via_business_bot_id: None,
        guestchat_via_from: None,
        reply_to: stored.reply_to.map(reply_header),
        date: stored.date,
        message: stored.text.clone(),
        media: stored.media.as_ref().map(media),
        reply_markup: stored.reply_markup.as_deref().and_then(reply_markup),
        entities: entities(stored),
        views: None,
        forwards: None,
        replies: None,
        edit_date: stored.edit_date,
        post_author: None,
        grouped_id: None,
        reactions: None,
        restriction_reason: None,
        ttl_period: None,
        quick_reply_shortcut_id: None,
        effect: None,
        factcheck: None,
        report_delivery_until_date: None,
        paid_message_stars: None,
        suggested_post: None,
        schedule_repeat_period: None,
        summary_from_language: None,
        rich_message: None,
    }
    .into()
}

fn service_action(action: &ServiceAction) -> tl::enums::MessageAction {
    match action {
        ServiceAction::ChatCreate { title } => tl::types::MessageActionChatCreate {
            title: title.clone(),
            users: Vec::new(),
        }
        .into(),
        ServiceAction::AddUser { user_id } => tl::types::MessageActionChatAddUser {
            users: vec![*user_id],
        }
        .into(),
        ServiceAction::DeleteUser { user_id } => {
            tl::types::MessageActionChatDeleteUser { user_id: *user_id }.into()
        }
    }
}

/// The admin rights the sandbox gives an admin: everything a bot may use.
fn admin_rights() -> tl::enums::ChatAdminRights {
    tl::types::ChatAdminRights {
        change_info: true,
        post_messages: true,
        edit_messages: true,
        delete_messages: true,
        ban_users: true,
        invite_users: true,
        pin_messages: true,
        add_admins: false,
        anonymous: false,
        manage_call: false,
        other: true,
        manage_topics: false,
        post_stories: false,
        edit_stories: false,
        delete_stories: false,
        manage_direct_messages: false,
        manage_ranks: false,
        manage_linked_peers: false,
        manage_welcome_messages: false,
    }
    .into()
}

fn banned_rights() -> tl::enums::ChatBannedRights {
    tl::types::ChatBannedRights {
        view_messages: true,
        send_messages: true,
        send_media: true,
        send_stickers: true,
        send_gifs: true,
        send_games: true,
        send_inline: true,
        embed_links: true,
        send_polls: true,
        change_info: true,
        invite_users: true,
        pin_messages: true,
        manage_topics: true,
        send_photos: true,
        send_videos: true,
        send_roundvideos: true,
        send_audios: true,
        send_voices: true,
        send_docs: true,
        send_plain: true,
        edit_rank: true,
        send_reactions: true,
        manage_linked_peers: true,
        until_date: 0,
    }
    .into()
}

/// A group as `viewer` sees it: `chat`/`channel`, or the forbidden form
/// once it was removed or banned.
pub fn chat(group: &GroupRecord, viewer: AccountId) -> tl::enums::Chat {
    let role = group.role(viewer);
    let count = i32::try_from(group.current_members().count()).unwrap_or(i32::MAX);
    let in_it = role.is_some_and(Role::is_in);
    let admin = role.is_some_and(Role::is_admin).then(admin_rights);
    match group.kind {
        GroupKind::Group if !in_it && role.is_some() => tl::types::ChatForbidden {
            id: group.id,
            title: group.title.clone(),
        }
        .into(),
        GroupKind::Group => tl::types::Chat {
            creator: role == Some(Role::Creator),
            left: !in_it,
            deactivated: false,
            call_active: false,
            call_not_empty: false,
            noforwards: false,
            id: group.id,
            title: group.title.clone(),
            photo: tl::enums::ChatPhoto::Empty,
            participants_count: count,
            date: group.date,
            version: 1,
            migrated_to: None,
            admin_rights: admin,
            default_banned_rights: None,
        }
        .into(),
        kind if role == Some(Role::Banned) => tl::types::ChannelForbidden {
            broadcast: kind == GroupKind::Channel,
            megagroup: kind == GroupKind::Supergroup,
            monoforum: false,
            id: group.id,
            access_hash: group.access_hash,
            title: group.title.clone(),
            until_date: None,
        }
        .into(),
        kind => tl::types::Channel {
            creator: role == Some(Role::Creator),
            left: !in_it,
            broadcast: kind == GroupKind::Channel,
            verified: false,
            megagroup: kind == GroupKind::Supergroup,
            restricted: false,
            signatures: false,
            min: false,
            scam: false,
            has_link: false,
            has_geo: false,
            slowmode_enabled: false,
            call_active: false,
            call_not_empty: false,
            fake: false,
            gigagroup: false,
            noforwards: false,
            join_to_send: false,
            join_request: false,
            forum: false,
            stories_hidden: false,
            stories_hidden_min: false,
            stories_unavailable: false,
            signature_profiles: false,
            autotranslation: false,
            broadcast_messages_allowed: false,
            monoforum: false,
            forum_tabs: false,
            id: group.id,
            access_hash: Some(group.access_hash),
            title: group.title.clone(),
            username: None,
            photo: tl::enums::ChatPhoto::Empty,
            date: group.date,
            restriction_reason: None,
            admin_rights: admin,
            banned_rights: None,
            default_banned_rights: None,
            participants_count: Some(count),
            usernames: None,
            stories_max_id: None,
            color: None,
            profile_color: None,
            emoji_status: None,
            level: None,
            subscription_until_date: None,
            bot_verification_icon: None,
            send_paid_messages_stars: None,
            linked_monoforum_id: None,
            linked_community_id: None,
        }
        .into(),
    }
}

/// A basic group member's `ChatParticipant` (none once out).
pub fn chat_participant(
    user_id: AccountId,
    role: Role,
    date: i32,
    inviter: AccountId,
) -> Option<tl::enums::ChatParticipant> {
    match role {
        Role::Creator => Some(
            tl::types::ChatParticipantCreator {
                user_id,
                rank: None,
            }
            .into(),
        ),
        Role::Admin => Some(
            tl::types::ChatParticipantAdmin {
                user_id,
                inviter_id: inviter,
                date,
                rank: None,
            }
            .into(),
        ),
        Role::Member => Some(
            tl::types::ChatParticipant {
                user_id,
                inviter_id: inviter,
                date,
                rank: None,
            }
            .into(),
        ),
        Role::Banned | Role::Left => None,
    }
}

/// A supergroup or channel member's `ChannelParticipant`.
pub fn channel_participant(
    user_id: AccountId,
    role: Role,
    date: i32,
    actor: AccountId,
) -> tl::enums::ChannelParticipant {
    match role {
        Role::Creator => tl::types::ChannelParticipantCreator {
            user_id,
            admin_rights: admin_rights(),
            rank: None,
        }
        .into(),
        Role::Admin => tl::types::ChannelParticipantAdmin {
            can_edit: false,
            is_self: false,
            user_id,
            inviter_id: None,
            promoted_by: actor,
            date,
            admin_rights: admin_rights(),
            rank: None,
        }
        .into(),
        Role::Member => tl::types::ChannelParticipant {
            user_id,
            date,
            subscription_until_date: None,
            rank: None,
        }
        .into(),
        Role::Banned => tl::types::ChannelParticipantBanned {
            left: true,
            peer: peer_user(user_id),
            kicked_by: actor,
            date,
            banned_rights: banned_rights(),
            rank: None,
        }
        .into(),
        Role::Left => tl::types::ChannelParticipantLeft {
            peer: peer_user(user_id),
        }
        .into(),
    }
}

/// Parses a stored boxed `ReplyMarkup` (stored only after it parsed once).
pub fn reply_markup(bytes: &[u8]) -> Option<tl::enums::ReplyMarkup> {
    tl::enums::ReplyMarkup::from_bytes(bytes).ok()
}

fn reply_header(msg_id: i32) -> tl::enums::MessageReplyHeader {
    tl::types::MessageReplyHeader {
        reply_to_scheduled: false,
        forum_topic: false,
        quote: false,
        reply_to_ephemeral: false,
        reply_to_msg_id: Some(msg_id),
        reply_to_peer_id: None,
        reply_from: None,
        reply_media: None,
        reply_to_top_id: None,
        quote_text: None,
        quote_entities: None,
        quote_offset: None,
        todo_item_id: None,
        poll_option: None,
    }
    .into()
}

pub fn media(media: &StoredMedia) -> tl::enums::MessageMedia {
    match media {
        StoredMedia::Photo {
            id,
            access_hash,
            size,
            width,
            height,
            dc_id,
            reference,
            ..
        } => tl::types::MessageMediaPhoto {
            spoiler: false,
            live_photo: false,
            photo: Some(
                tl::types::Photo {
                    has_stickers: false,
                    id: *id,
                    access_hash: *access_hash,
                    file_reference: files::file_reference(*id, *reference),
                    date: now(),
                    sizes: vec![
                        tl::types::PhotoSize {
                            r#type: "x".into(),
                            w: *width,
                            h: *height,
                            size: i32::try_from(*size).unwrap_or(i32::MAX),
                        }
                        .into(),
                    ],
                    video_sizes: None,
                    dc_id: *dc_id,
                }
                .into(),
            ),
            ttl_seconds: None,
            video: None,
        }
        .into(),
        StoredMedia::Document {
            id,
            access_hash,
            file_name,
            mime_type,
            size,
            shown_as,
            dc_id,
            reference,
            ..
        } => tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: matches!(
                shown_as,
                Some(ShownAs::Video { .. } | ShownAs::VideoNote { .. })
            ),
            round: matches!(shown_as, Some(ShownAs::VideoNote { .. })),
            voice: matches!(shown_as, Some(ShownAs::Voice { .. })),
            document: Some(
                tl::types::Document {
                    id: *id,
                    access_hash: *access_hash,
                    file_reference: files::file_reference(*id, *reference),
                    date: now(),
                    mime_type: mime_type.clone(),
                    size: *size,
                    thumbs: None,
                    video_thumbs: None,
                    dc_id: *dc_id,
                    attributes: document_attributes(file_name, shown_as.as_ref()),
                }
                .into(),
            ),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into(),
        StoredMedia::Location {
            latitude,
            longitude,
        } => tl::types::MessageMediaGeo {
            geo: tl::types::GeoPoint {
                long: *longitude,
                lat: *latitude,
                access_hash: 0,
                accuracy_radius: None,
            }
            .into(),
        }
        .into(),
        StoredMedia::Venue {
            latitude,
            longitude,
            title,
            address,
        } => tl::types::MessageMediaVenue {
            geo: tl::types::GeoPoint {
                long: *longitude,
                lat: *latitude,
                access_hash: 0,
                accuracy_radius: None,
            }
            .into(),
            title: title.clone(),
            address: address.clone(),
            provider: String::new(),
            venue_id: String::new(),
            venue_type: String::new(),
        }
        .into(),
        StoredMedia::Poll {
            id,
            question,
            options,
        } => tl::types::MessageMediaPoll {
            poll: tl::types::Poll {
                id: *id,
                closed: false,
                public_voters: false,
                multiple_choice: false,
                quiz: false,
                open_answers: false,
                revoting_disabled: false,
                shuffle_answers: false,
                hide_results_until_close: false,
                creator: false,
                subscribers_only: false,
                question: plain(question),
                answers: options
                    .iter()
                    .enumerate()
                    .map(|(n, option)| {
                        tl::types::PollAnswer {
                            text: plain(option),
                            option: vec![u8::try_from(n).unwrap_or(u8::MAX)],
                            media: None,
                            added_by: None,
                            date: None,
                        }
                        .into()
                    })
                    .collect(),
                close_period: None,
                close_date: None,
                countries_iso2: None,
                hash: 0,
            }
            .into(),
            results: tl::types::PollResults {
                min: false,
                has_unread_votes: false,
                can_view_stats: false,
                results: None,
                total_voters: None,
                recent_voters: None,
                solution: None,
                solution_entities: None,
                solution_media: None,
            }
            .into(),
            attached_media: None,
        }
        .into(),
        StoredMedia::Dice { emoji, value } => tl::types::MessageMediaDice {
            value: *value,
            emoticon: emoji.clone(),
            game_outcome: None,
        }
        .into(),
        StoredMedia::Contact {
            phone_number,
            first_name,
            last_name,
            user_id,
        } => tl::types::MessageMediaContact {
            phone_number: phone_number.clone(),
            first_name: first_name.clone(),
            last_name: last_name.clone(),
            vcard: String::new(),
            user_id: *user_id,
        }
        .into(),
    }
}

/// Text without entities.
fn plain(text: &str) -> tl::enums::TextWithEntities {
    tl::types::TextWithEntities {
        text: text.to_owned(),
        entities: Vec::new(),
    }
    .into()
}

fn video_attribute(duration: f64, w: i32, h: i32, round: bool) -> tl::enums::DocumentAttribute {
    tl::types::DocumentAttributeVideo {
        round_message: round,
        supports_streaming: true,
        nosound: false,
        duration,
        w,
        h,
        preload_prefix_size: None,
        video_start_ts: None,
        video_codec: None,
    }
    .into()
}

fn document_attributes(
    file_name: &str,
    shown_as: Option<&ShownAs>,
) -> Vec<tl::enums::DocumentAttribute> {
    let name = tl::types::DocumentAttributeFilename {
        file_name: file_name.to_owned(),
    }
    .into();
    let audio = |voice, duration, title: &Option<String>, performer: &Option<String>| {
        tl::types::DocumentAttributeAudio {
            voice,
            duration,
            title: title.clone(),
            performer: performer.clone(),
            waveform: None,
        }
        .into()
    };
    let mut attributes = vec![name];
    match shown_as {
        None => {}
        Some(ShownAs::Voice { duration }) => {
            attributes.push(audio(true, *duration, &None, &None));
        }
        Some(ShownAs::Audio {
            duration,
            title,
            performer,
        }) => attributes.push(audio(false, *duration, title, performer)),
        Some(ShownAs::Video {
            duration,
            width,
            height,
        }) => attributes.push(video_attribute(*duration, *width, *height, false)),
        Some(ShownAs::VideoNote { duration, length }) => {
            attributes.push(video_attribute(*duration, *length, *length, true));
        }
        Some(ShownAs::Animation {
            duration,
            width,
            height,
        }) => {
            attributes.push(video_attribute(*duration, *width, *height, false));
            attributes.push(tl::types::DocumentAttributeAnimated {}.into());
        }
        Some(ShownAs::Sticker { emoji }) => attributes.push(
            tl::types::DocumentAttributeSticker {
                mask: false,
                alt: emoji.clone(),
                stickerset: tl::enums::InputStickerSet::Empty,
                mask_coords: None,
            }
            .into(),
        ),
    }
    attributes
}

/// `help.getConfig`'s answer from DC `this_dc`: `dc_options` lists the
/// sandbox's DCs (static, loopback), which grammers takes into its session
/// keeping its keys. Without DCs it stays empty.
pub fn config(this_dc: i32, dcs: &[(i32, SocketAddrV4)]) -> tl::enums::Config {
    let date = now();
    let dc_options = dcs
        .iter()
        .map(|&(id, addr)| {
            tl::types::DcOption {
                ipv6: false,
                media_only: false,
                tcpo_only: false,
                cdn: false,
                r#static: true,
                this_port_only: false,
                id,
                ip_address: addr.ip().to_string(),
                port: i32::from(addr.port()),
                secret: None,
            }
            .into()
        })
        .collect();
    tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: true,
        blocked_mode: false,
        force_try_ipv6: false,
        date,
        expires: date.saturating_add(3600),
        test_mode: false,
        this_dc,
        dc_options,
        dc_txt_domain_name: String::new(),
        chat_size_max: 200,
        megagroup_size_max: 200_000,
        forwarded_count_max: 100,
        online_update_period_ms: 210_000,
        offline_blur_timeout_ms: 5000,
        offline_idle_timeout_ms: 30_000,
        online_cloud_timeout_ms: 300_000,
        notify_cloud_delay_ms: 30_000,
        notify_default_delay_ms: 1500,
        push_chat_period_ms: 60_000,
        push_chat_limit: 2,
        edit_time_limit: 172_800,
        revoke_time_limit: i32::MAX,
        revoke_pm_time_limit: i32::MAX,
        rating_e_decay: 2_419_200,
        stickers_recent_limit: 200,
        channels_read_media_period: 604_800,
        tmp_sessions: None,
        call_receive_timeout_ms: 20_000,
        call_ring_timeout_ms: 90_000,
        call_connect_timeout_ms: 30_000,
        call_packet_timeout_ms: 10_000,
        me_url_prefix: "https://t.me/".into(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: 1024,
        message_length_max: 4096,
        webfile_dc_id: DC_ID,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    }
    .into()
}

#[cfg(test)]
mod tests {
    use grammers_tl_types::Serializable;

    use super::*;

    fn profile(id: AccountId) -> Profile {
        Profile {
            id,
            access_hash: 9,
            first_name: "Ann".into(),
            username: Some("ann".into()),
            phone: None,
            lang_code: None,
            last_name: None,
            premium: false,
        }
    }

    #[test]
    fn bot_user_round_trips() {
        let bot = user(&profile(5), true, 5);
        let back = tl::enums::User::from_bytes(&bot.to_bytes()).unwrap();
        let tl::enums::User::User(back) = back else {
            panic!("empty user")
        };
        assert!(back.bot && back.is_self);
        assert_eq!(back.access_hash, Some(9));
    }

    #[test]
    fn message_round_trips_for_both_sides() {
        let stored = StoredMessage {
            id: 3,
            from: 5,
            to: 6,
            date: 100,
            text: "hello".into(),
            media: Some(StoredMedia::photo(None, "image/jpeg".into(), 10)),
            reply_to: Some(2),
            ..StoredMessage::default()
        };
        for (viewer, out, peer) in [(5, true, 6), (6, false, 5)] {
            let bytes = message(&stored, viewer).to_bytes();
            let tl::enums::Message::Message(m) = tl::enums::Message::from_bytes(&bytes).unwrap()
            else {
                panic!("not a message")
            };
            assert_eq!(m.out, out);
            assert_eq!(m.peer_id, peer_user(peer));
            assert_eq!(m.message, "hello");
            assert!(matches!(m.media, Some(tl::enums::MessageMedia::Photo(_))));
        }
    }

    #[test]
    fn config_round_trips_with_no_dc_options() {
        let tl::enums::Config::Config(back) =
            tl::enums::Config::from_bytes(&config(DC_ID, &[]).to_bytes()).unwrap();
        assert!(back.dc_options.is_empty());
        assert_eq!(back.this_dc, DC_ID);
        let dc4 = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 4404);
        let tl::enums::Config::Config(back) =
            tl::enums::Config::from_bytes(&config(4, &[(4, dc4)]).to_bytes()).unwrap();
        let [tl::enums::DcOption::Option(option)] = &back.dc_options[..] else {
            panic!("one DC option");
        };
        assert_eq!((option.id, option.port, back.this_dc), (4, 4404, 4));
        assert_eq!(option.ip_address, "127.0.0.1");
    }
}
