//! An account across DCs: `auth.exportAuthorization` on the home DC, then
//! `auth.importAuthorization` with the target DC's own auth key, which
//! binds that key to the account (until then it answers `401
//! AUTH_KEY_UNREGISTERED`, as Telegram's DCs do). Files live on a DC
//! (`upload.getFile` elsewhere answers `FILE_MIGRATE_X`, see `files`).

use std::collections::HashMap;
use std::sync::PoisonError;

use grammers_tl_types as tl;
use grammers_tl_types::Serializable;

use super::accounts::AccountId;
use super::{FakeTelegram, TgError, render};
use crate::sandbox::Caller;

/// The sandbox's DC ids, as Telegram's production DCs.
pub const DC_IDS: std::ops::RangeInclusive<i32> = 1..=5;

/// Exported authorizations by their bytes: the account and target DC.
pub type Exports = HashMap<Vec<u8>, (AccountId, i32)>;

impl FakeTelegram {
    /// `auth.exportAuthorization`: a one-time token that lets `account`
    /// sign in on DC `request.dc_id`.
    pub(super) fn export_authorization(
        &self,
        account: AccountId,
        this_dc: i32,
        request: tl::functions::auth::ExportAuthorization,
    ) -> Result<Vec<u8>, TgError> {
        if !DC_IDS.contains(&request.dc_id) || request.dc_id == this_dc {
            return Err(TgError::bad_request("DC_ID_INVALID"));
        }
        let bytes: [u8; 32] = rand::random();
        self.0
            .exports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bytes.to_vec(), (account, request.dc_id));
        let exported = tl::enums::auth::ExportedAuthorization::Authorization(
            tl::types::auth::ExportedAuthorization {
                id: account,
                bytes: bytes.to_vec(),
            },
        );
        Ok(exported.to_bytes())
    }

    /// `auth.importAuthorization` on the target DC: binds the caller's key.
    pub(super) fn import_authorization(
        &self,
        caller: Caller,
        request: tl::functions::auth::ImportAuthorization,
    ) -> Result<Vec<u8>, TgError> {
        let exported = self
            .0
            .exports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.bytes);
        if exported != Some((request.id, caller.dc_id)) {
            return Err(TgError::bad_request("AUTH_BYTES_INVALID"));
        }
        let mut inner = self.lock();
        let world = &mut inner.world;
        let Some(record) = world
            .keys
            .iter_mut()
            .find(|k| k.key_id() == caller.auth_key_id)
        else {
            return Err(TgError::new(401, "AUTH_KEY_UNREGISTERED"));
        };
        match record.account {
            Some(account) if account != request.id => {
                return Err(TgError::bad_request("USER_ALREADY_AUTHORIZED"));
            }
            _ => record.account = Some(request.id),
        }
        let profile = world
            .profile(request.id)
            .ok_or_else(|| TgError::bad_request("USER_ID_INVALID"))?;
        let user = render::user(profile, world.is_bot(request.id), request.id);
        drop(inner);
        self.changed();
        let authorization =
            tl::enums::auth::Authorization::Authorization(tl::types::auth::Authorization {
                setup_password_required: false,
                otherwise_relogin_days: None,
                tmp_sessions: None,
                future_auth_token: None,
                user,
            });
        Ok(authorization.to_bytes())
    }
}
