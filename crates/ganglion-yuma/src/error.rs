//! Typed errors for the epoch entry point.
//!
//! Weight-submission errors live in [`crate::weights::WeightsError`], named after the chain's
//! own error variants; this module only covers malformed epoch inputs, which on the real chain
//! cannot happen because storage keeps the per-uid vectors in step.

/// Why [`crate::run_epoch`] refused its input. Nothing is computed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YumaError {
    /// A per-uid input does not have one entry per uid.
    #[error(
        "epoch input `{field}` has {got} entries but the subnet has {expected} uids; \
         pass exactly one entry per uid (index = uid)"
    )]
    LengthMismatch {
        /// Name of the offending `EpochInput` field.
        field: &'static str,
        /// Number of uids (length of `stake`).
        expected: usize,
        /// Length that was passed.
        got: usize,
    },
    /// More uids than a `u16` uid can address.
    #[error(
        "epoch input has {n} uids but uids are u16, so at most 65535 are allowed; shrink the subnet"
    )]
    TooManyUids {
        /// Number of uids passed.
        n: usize,
    },
    /// `params.owner_uid` names a uid that is not in the subnet.
    #[error(
        "owner uid {owner_uid} is out of range for a subnet of {n} uids; \
         pass None when the owner hotkey is not registered"
    )]
    OwnerUidOutOfRange {
        /// The owner uid that was passed.
        owner_uid: u16,
        /// Number of uids.
        n: usize,
    },
}
