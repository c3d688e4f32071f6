//! The acceptance pipeline of one received rumor: replay, duplicate, rate and identity
//! checks before any RSA work, then the shared verification, the signer's identity and
//! certificate, and the signed-time checks; what passes is stored.

use std::sync::Arc;

use super::{Bucket, Gossip, Kind};
use crate::cert::{CertError, Trust};
use crate::event::RejectReason;
use crate::identity::{Fingerprint, SentryError};
use crate::pace::SignedRate;
use crate::scheduler::Time;
use crate::verify::AdmittedRumor;
use crate::wire::{
    ConnId, MAX_BODY_SLACK, NodeId, RUMOR_KINDS, RumorBody, RumorContent, RumorKey, SignedRumor,
    from_json_versioned, to_json,
};

/// A rumor that passed every check and is now stored.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    /// Its key.
    pub key: RumorKey,
    /// The verified body and its origin's key fingerprint, shared with every node of the
    /// process that admitted the same bytes.
    pub admitted: Arc<AdmittedRumor>,
    /// Until when the origin's certificate is valid (with the clock-skew bound), where the
    /// cluster has an authority and the rumor is an advertisement.
    pub certified_until: Option<Time>,
}

/// What became of one received rumor.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// New and valid: stored, to be applied and forwarded.
    Accepted(Box<Accepted>),
    /// Already known (same or older sequence number): dropped before any RSA work.
    Duplicate,
    /// A valid echo of this node's own earlier incarnation with this sequence number.
    OwnEcho(u64),
    /// Dropped, but the sender is not to blame.
    Ignored(RejectReason),
    /// Invalid: the sender is to blame.
    Rejected(RejectReason),
    /// Proof, by its own valid signature, that the key `key` (which speaks for `node`)
    /// signed for an identity that is not its own: the signer is to blame, whoever
    /// relayed it.
    Convicted {
        /// The identity the key speaks for.
        node: NodeId,
        /// The signing key.
        key: Fingerprint,
        /// What it did.
        reason: RejectReason,
    },
}

/// What the acceptance pipeline needs to know about identities.
pub(crate) struct Admission<'a> {
    /// Whether a key is banned or evicted.
    pub excluded: &'a dyn Fn(&Fingerprint) -> bool,
    /// The key a live node id is bound to, if any.
    pub bound: &'a dyn Fn(NodeId) -> Option<Fingerprint>,
    /// The live node id a key speaks for, if any.
    pub owner: &'a dyn Fn(&Fingerprint) -> Option<NodeId>,
    /// The key of the direct peer the rumor came from.
    pub sender_key: Fingerprint,
    /// The cluster's authorities, if it has any.
    pub trust: Option<&'a Trust>,
}

impl Gossip {
    /// Runs one received rumor through the acceptance pipeline.
    pub(crate) fn receive(
        &mut self,
        now: Time,
        conn: ConnId,
        sender: NodeId,
        rumor: SignedRumor,
        admission: &Admission<'_>,
    ) -> Outcome {
        self.metrics.rumors_in += 1;
        let key = rumor.key();
        let seq = rumor.seq;
        let own = key.origin == sender;
        let window = self.delivered.entry(conn).or_default();
        match window.get(&key) {
            Some(prev) if seq == prev => {
                self.metrics.rumors_duplicate += 1;
                return Outcome::Duplicate;
            }
            Some(prev) if seq < prev && own => return Outcome::Rejected(RejectReason::Replay),
            _ => window.insert(key, seq),
        }
        if self.knows(&key, seq) {
            self.metrics.rumors_duplicate += 1;
            return Outcome::Duplicate;
        }
        // A relay's excess is dropped before any RSA work and blamed on nobody. A peer's
        // own rumors are judged on their signed issue times below; those issued too long
        // ago to be judged take the arrival-time limit too (checked before RSA).
        let limit = self.rate_limit();
        let token = self.has_token(now, key.origin, false);
        if !own && !token {
            return Outcome::Ignored(RejectReason::RateLimited);
        }
        let unjudged = |body: &RumorBody| {
            !token && !SignedRate::judges(now.as_millis(), body.issued_at, &limit)
        };
        let admitted = match self.verified(&rumor, admission, &unjudged) {
            Ok(admitted) => admitted,
            Err(outcome) => return outcome,
        };
        let certified_until = match self.check_signer(now, &admitted, sender, admission) {
            Ok(until) => until,
            Err(outcome) => return outcome,
        };
        let Some(expires_at) = self.lifetime(now, &admitted, certified_until) else {
            return Outcome::Ignored(RejectReason::Untimely);
        };
        let issued_at = admitted.body.issued_at;
        let judged = own && SignedRate::judges(now.as_millis(), issued_at, &limit);
        if judged {
            let window = self.delivered.entry(conn).or_default();
            if window.own.record(now.as_millis(), issued_at, &limit) {
                return Outcome::Rejected(RejectReason::RateLimited);
            }
        }
        if self.full(&key, admitted.raw.get().len()) {
            return Outcome::Ignored(RejectReason::Violation("rumor store full".into()));
        }
        if !judged {
            self.has_token(now, key.origin, true);
        }
        self.insert(
            now,
            key,
            Arc::clone(&admitted),
            (rumor.age_ms, rumor.hops),
            (Some(conn), expires_at),
        );
        self.metrics.rumors_accepted += 1;
        Outcome::Accepted(Box::new(Accepted {
            key,
            admitted,
            certified_until,
        }))
    }

    /// What a verified rumor's signer may say, and until when its certificate lets it be
    /// believed. A key signs for its own id only: a direct peer's key for the peer, a key
    /// that speaks for a live member for that member, a certified key for what its
    /// certificate names; anything else is proven misbehaviour. This node's own id is an
    /// echo of an earlier incarnation. Only a live member bound to the signing key may
    /// accuse (unbound ids would let one key holder sign a whole quorum, and fill the
    /// store with accusations); with an authority, every rumor but a certified
    /// advertisement needs such a member too.
    fn check_signer(
        &self,
        now: Time,
        admitted: &AdmittedRumor,
        sender: NodeId,
        admission: &Admission<'_>,
    ) -> Result<Option<Time>, Outcome> {
        let body = &admitted.body;
        let (origin, key) = (body.origin, admitted.fingerprint);
        let convicted = |node| Outcome::Convicted {
            node,
            key,
            reason: RejectReason::Impersonation(origin),
        };
        if key == admission.sender_key && origin != sender {
            return Err(convicted(sender));
        }
        if let Some(owner) = (admission.owner)(&key).filter(|&owner| owner != origin) {
            return Err(convicted(owner));
        }
        if origin == self.me {
            return Err(Outcome::OwnEcho(body.seq));
        }
        let member = (admission.bound)(origin) == Some(key);
        match (&body.content, admission.trust) {
            (RumorContent::Advert { asn, cert, .. }, Some(trust)) => {
                match trust.certifies_text(now, cert.as_ref(), origin, *asn, &key) {
                    Ok(until) => Ok(Some(until)),
                    Err(CertError::Misnamed { node, .. }) => Err(convicted(node)),
                    Err(e) => Err(Outcome::Ignored(RejectReason::Uncertified(e.to_string()))),
                }
            }
            (RumorContent::Advert { .. }, None) => Ok(None),
            (_, Some(_)) | (RumorContent::Accuse { .. }, None) if !member => {
                Err(Outcome::Ignored(RejectReason::NotMember(origin)))
            }
            _ => Ok(None),
        }
    }

    /// The rumor parsed, checked against its envelope and this node's identities, and
    /// verified (once per process, through the cache); dropped before RSA when its body
    /// is `over_rate`.
    fn verified(
        &mut self,
        rumor: &SignedRumor,
        admission: &Admission<'_>,
        over_rate: &dyn Fn(&RumorBody) -> bool,
    ) -> Result<Arc<AdmittedRumor>, Outcome> {
        let rate = |body: &RumorBody| {
            if over_rate(body) {
                Err(Outcome::Ignored(RejectReason::RateLimited))
            } else {
                Ok(())
            }
        };
        match self.cache.admitted(rumor) {
            Some(known) => {
                check_envelope(rumor, &known, admission)?;
                rate(&known.body)?;
                Ok(known)
            }
            None => {
                let parsed = parse(rumor).map_err(|reason| match reason {
                    RejectReason::Unknown(_) => Outcome::Ignored(reason),
                    reason => Outcome::Rejected(reason),
                })?;
                check_envelope(rumor, &parsed, admission)?;
                rate(&parsed.body)?;
                match self.cache.admit(parsed) {
                    Ok(a) => {
                        self.metrics.signatures_verified += 1;
                        Ok(a)
                    }
                    Err(SentryError::BadSignature) => {
                        Err(Outcome::Rejected(RejectReason::BadSignature))
                    }
                    Err(e) => Err(Outcome::Rejected(RejectReason::BadKey(e.to_string()))),
                }
            }
        }
    }

    /// When a verified rumor expires: its signed issue time plus the limit of its kind, or
    /// the end of its certificate's validity if that comes first. `None` when it is
    /// already expired, or issued further ahead of this node's clock than the skew bound
    /// (never blamed: the relay did not sign it, and the origin's clock may be wrong).
    fn lifetime(&self, now: Time, admitted: &AdmittedRumor, cap: Option<Time>) -> Option<Time> {
        let issued = Time::from_millis(admitted.body.issued_at);
        let limit = self.expiry_for(Kind::of(&admitted.body.content));
        let expires_at = cap.map_or(issued + limit, |cap| cap.min(issued + limit));
        (issued <= now + self.policy.max_clock_skew && expires_at > now).then_some(expires_at)
    }

    /// Whether `origin` may send one more rumor now; takes the token when `take`.
    fn has_token(&mut self, now: Time, origin: NodeId, take: bool) -> bool {
        let (cap, period_ms) = self.bucket_size();
        if !self.buckets.contains_key(&origin) && self.buckets.len() >= self.policy.max_members {
            self.buckets.clear();
        }
        let bucket = self.buckets.entry(origin).or_insert(Bucket {
            milli_tokens: cap,
            last: now,
        });
        bucket.refill(now, cap, period_ms);
        if bucket.milli_tokens < 1000 {
            return false;
        }
        if take {
            bucket.milli_tokens -= 1000;
        }
        true
    }
}

/// Parses a rumor's body and checks its limits (the cache's admission, before RSA).
fn parse(rumor: &SignedRumor) -> Result<AdmittedRumor, RejectReason> {
    let raw = rumor.body.get();
    let body: RumorBody = from_json_versioned(raw.as_bytes(), Some("content"), &RUMOR_KINDS)?;
    body.content.check_limits()?;
    let compact = to_json(&body).len();
    if raw.len() > compact + MAX_BODY_SLACK {
        return Err(RejectReason::Violation(format!(
            "body of {} bytes, {compact} compact",
            raw.len()
        )));
    }
    Ok(AdmittedRumor::new(
        body,
        Arc::clone(&rumor.body),
        rumor.sig.clone(),
    ))
}

/// Checks a parsed body against the envelope it came in and against this node's view of
/// identities (banned keys, the key each live node id is bound to).
fn check_envelope(
    rumor: &SignedRumor,
    admitted: &AdmittedRumor,
    admission: &Admission<'_>,
) -> Result<(), Outcome> {
    let body = &admitted.body;
    if body.origin != rumor.origin
        || body.seq != rumor.seq
        || body.content.subject() != rumor.subject
    {
        return Err(Outcome::Rejected(RejectReason::EnvelopeMismatch));
    }
    if admitted.fingerprint == admission.sender_key {
        // The peer's own key: judged after verification (it may sign for its own id only).
        return Ok(());
    }
    if (admission.excluded)(&admitted.fingerprint) {
        return Err(Outcome::Ignored(RejectReason::Excluded));
    }
    if (admission.bound)(body.origin).is_some_and(|b| b != admitted.fingerprint) {
        // Another key speaks for this id (an honest re-key waits for the old binding to
        // lapse).
        return Err(Outcome::Ignored(RejectReason::IdentityConflict(
            body.origin,
        )));
    }
    Ok(())
}
