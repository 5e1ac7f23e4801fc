//! placeholder module owned by a helper; replaced before commit.
