//! The KV cache: per layer, the keys and values of every token seen so far in growable
//! contiguous buffers, `(positions, kv_heads · head_dim)` row-major.
//!
//! It used to be candle tensors grown with `Tensor::cat` at every step, which copied the
//! whole cache per token and layer (~5% of decode time in a perf profile, growing with the
//! context) and left the one-query attention to gemm calls whose packing overhead dominated at
//! these sizes. Appending to a `Vec` is amortised O(new rows), and the decode attention
//! ([`crate::kernels::attend_one`]) reads the buffers in place.
//!
//! Sharing: a cache is cloned to reuse a prompt's keys for many completions. Buffers are
//! reference counted and copy-on-write: appending to a buffer that another clone also holds
//! first copies it, so no clone ever sees another's tokens; a clone that is the only owner
//! appends in place. A buffer's length is always exactly `len × width`.

use std::sync::Arc;

/// Keys and values of every layer for the tokens seen so far.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
}

/// One layer's keys and values.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerKv {
    keys: Arc<Vec<f32>>,
    values: Arc<Vec<f32>>,
}

impl KvCache {
    pub(crate) fn new(layers: usize) -> KvCache {
        KvCache { layers: vec![LayerKv::default(); layers], len: 0 }
    }

    /// Number of tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn layers(&self) -> &[LayerKv] {
        &self.layers
    }

    pub(crate) fn layers_mut(&mut self) -> &mut [LayerKv] {
        &mut self.layers
    }

    /// Records that every layer now holds `len` tokens.
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Drops whatever a failed forward appended after `len` tokens of `width` floats per layer.
    pub(crate) fn truncate(&mut self, len: usize, width: usize) {
        for layer in &mut self.layers {
            truncate(&mut layer.keys, len * width);
            truncate(&mut layer.values, len * width);
        }
        self.len = len;
    }
}

impl LayerKv {
    /// Appends rows of keys and values (the same number of floats each).
    pub(crate) fn append(&mut self, keys: &[f32], values: &[f32]) {
        append(&mut self.keys, keys);
        append(&mut self.values, values);
    }

    pub(crate) fn keys(&self) -> &[f32] {
        &self.keys
    }

    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }
}

fn append(buffer: &mut Arc<Vec<f32>>, rows: &[f32]) {
    if let Some(owned) = Arc::get_mut(buffer) {
        owned.extend_from_slice(rows);
        return;
    }
    // Shared with another clone: copy, leaving the other clone's view as it was.
    let mut owned = Vec::with_capacity(buffer.len() + rows.len());
    owned.extend_from_slice(buffer);
    owned.extend_from_slice(rows);
    *buffer = Arc::new(owned);
}

fn truncate(buffer: &mut Arc<Vec<f32>>, len: usize) {
    if buffer.len() > len {
        // Longer than this cache's length means this cache appended, so it owns the buffer
        // (`make_mut` does not copy).
        Arc::make_mut(buffer).truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_never_see_each_others_appends() {
        let mut base = KvCache::new(2);
        for layer in base.layers_mut() {
            layer.append(&[1.0, 2.0], &[3.0, 4.0]);
        }
        base.set_len(1);
        let mut a = base.clone();
        let mut b = base.clone();
        a.layers_mut()[0].append(&[5.0, 6.0], &[7.0, 8.0]);
        b.layers_mut()[0].append(&[9.0, 10.0], &[11.0, 12.0]);
        assert_eq!(base.layers_mut()[0].keys(), &[1.0, 2.0]);
        assert_eq!(a.layers_mut()[0].keys(), &[1.0, 2.0, 5.0, 6.0]);
        assert_eq!(b.layers_mut()[0].values(), &[3.0, 4.0, 11.0, 12.0]);
        // Once a clone owns its buffer it appends in place.
        let before = a.layers_mut()[0].keys().as_ptr();
        a.layers_mut()[0].append(&[], &[]);
        assert_eq!(a.layers_mut()[0].keys().as_ptr(), before);
        a.truncate(1, 2);
        assert_eq!(a.layers_mut()[0].keys(), &[1.0, 2.0]);
        assert_eq!(a.len(), 1);
    }
}
