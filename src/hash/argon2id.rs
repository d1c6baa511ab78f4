//! Argon2id parameters with OWASP defaults and bounds.

/// Argon2id cost parameters: memory in KiB (`m`), passes (`t`) and lanes (`p`).
///
/// ```
/// use keyward::hash::Argon2Params;
/// let owasp = Argon2Params::DEFAULT;
/// assert_eq!((owasp.m_cost(), owasp.t_cost(), owasp.p_cost()), (19_456, 2, 1));
/// assert!(Argon2Params::new(4, 1, 1).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    m: u32,
    t: u32,
    p: u32,
}

/// Why Argon2id parameters are out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Argon2ParamsError {
    /// Memory cost out of bounds.
    #[error("m={found} out of bounds (8 x p to {} KiB)", Argon2Params::MAX_M_COST)]
    MCost {
        /// The value given.
        found: u32,
    },
    /// Time cost out of bounds.
    #[error(
        "t={found} out of bounds ({} to {})",
        Argon2Params::MIN_T_COST,
        Argon2Params::MAX_T_COST
    )]
    TCost {
        /// The value given.
        found: u32,
    },
    /// Parallelism out of bounds.
    #[error(
        "p={found} out of bounds ({} to {})",
        Argon2Params::MIN_P_COST,
        Argon2Params::MAX_P_COST
    )]
    PCost {
        /// The value given.
        found: u32,
    },
}

impl Argon2Params {
    /// OWASP's recommendation: 19 MiB, 2 passes, 1 lane.
    pub const DEFAULT: Self = Self {
        m: 19_456,
        t: 2,
        p: 1,
    };
    /// Most memory accepted, in KiB (1 GiB), so a stored hash cannot exhaust the server.
    pub const MAX_M_COST: u32 = 1 << 20;
    /// Fewest passes.
    pub const MIN_T_COST: u32 = 1;
    /// Most passes.
    pub const MAX_T_COST: u32 = 64;
    /// Fewest lanes.
    pub const MIN_P_COST: u32 = 1;
    /// Most lanes.
    pub const MAX_P_COST: u32 = 64;

    /// Checked parameters. Memory must be at least 8 KiB per lane (Argon2's minimum).
    ///
    /// # Errors
    /// [`Argon2ParamsError`] naming the parameter out of bounds.
    pub const fn new(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, Argon2ParamsError> {
        if p_cost < Self::MIN_P_COST || p_cost > Self::MAX_P_COST {
            return Err(Argon2ParamsError::PCost { found: p_cost });
        }
        if t_cost < Self::MIN_T_COST || t_cost > Self::MAX_T_COST {
            return Err(Argon2ParamsError::TCost { found: t_cost });
        }
        if m_cost < 8 * p_cost || m_cost > Self::MAX_M_COST {
            return Err(Argon2ParamsError::MCost { found: m_cost });
        }
        Ok(Self {
            m: m_cost,
            t: t_cost,
            p: p_cost,
        })
    }

    /// Memory in KiB.
    #[must_use]
    pub const fn m_cost(&self) -> u32 {
        self.m
    }

    /// Passes over memory.
    #[must_use]
    pub const fn t_cost(&self) -> u32 {
        self.t
    }

    /// Lanes.
    #[must_use]
    pub const fn p_cost(&self) -> u32 {
        self.p
    }

    /// Whether `self` is weaker than `other` in memory or passes.
    pub(crate) fn weaker_than(&self, other: &Self) -> bool {
        self.m < other.m || self.t < other.t
    }

    /// Runs Argon2id over `input` with `salt`, filling `out`.
    pub(crate) fn compute(&self, input: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), ()> {
        let params =
            argon2::Params::new(self.m, self.t, self.p, Some(out.len())).map_err(|_| ())?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(input, salt, out)
            .map_err(|_| ())
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::DEFAULT
    }
}
