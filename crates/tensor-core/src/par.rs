/// How a kernel may use threads: a value passed to the call, nothing global (faer's design).
///
/// The library is sequential by default. With the `rayon` feature, `Par::Rayon(n)` splits work
/// over `n` threads (`0` = the current rayon pool, normally one thread per core).
///
/// ```
/// use modelopt_tensor_core::Par;
/// let mut v = vec![1.0f32; 10];
/// Par::Seq.for_each_chunk_mut(&mut v, 4, |i, chunk| chunk.iter_mut().for_each(|x| *x += i as f32));
/// assert_eq!(v, [1., 1., 1., 1., 2., 2., 2., 2., 3., 3.]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Par {
    /// Run on the calling thread.
    #[default]
    Seq,
    /// Run on rayon with this many threads (`0`: the current pool).
    #[cfg(feature = "rayon")]
    Rayon(usize),
}

impl Par {
    /// All cores when the `rayon` feature is on, else sequential.
    ///
    /// ```
    /// let _ = modelopt_tensor_core::Par::all_cores();
    /// ```
    pub fn all_cores() -> Self {
        #[cfg(feature = "rayon")]
        {
            Par::Rayon(0)
        }
        #[cfg(not(feature = "rayon"))]
        {
            Par::Seq
        }
    }

    /// The number of threads this value asks for (1 for `Seq`).
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::Par::Seq.degree(), 1);
    /// ```
    pub fn degree(self) -> usize {
        match self {
            Par::Seq => 1,
            #[cfg(feature = "rayon")]
            Par::Rayon(0) => rayon::current_num_threads(),
            #[cfg(feature = "rayon")]
            Par::Rayon(n) => n,
        }
    }

    /// Calls `f(chunk_index, chunk)` on each `chunk_len`-sized chunk of `data` (the last may be
    /// shorter), in parallel when `self` allows. `chunk_len` of 0 is treated as 1.
    ///
    /// ```
    /// use modelopt_tensor_core::Par;
    /// let mut v = [0u8; 5];
    /// Par::Seq.for_each_chunk_mut(&mut v, 2, |i, c| c.fill(i as u8));
    /// assert_eq!(v, [0, 0, 1, 1, 2]);
    /// ```
    pub fn for_each_chunk_mut<T, F>(self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync + Send,
    {
        let chunk_len = chunk_len.max(1);
        match self {
            Par::Seq => data
                .chunks_mut(chunk_len)
                .enumerate()
                .for_each(|(i, c)| f(i, c)),
            #[cfg(feature = "rayon")]
            Par::Rayon(_) => {
                use rayon::prelude::*;
                self.install(|| {
                    data.par_chunks_mut(chunk_len)
                        .enumerate()
                        .for_each(|(i, c)| f(i, c))
                })
            }
        }
    }

    /// Maps `f` over `0..n` and collects the results in order, in parallel when allowed.
    ///
    /// ```
    /// use modelopt_tensor_core::Par;
    /// assert_eq!(Par::Seq.map_range(4, |i| i * i), vec![0, 1, 4, 9]);
    /// ```
    pub fn map_range<R, F>(self, n: usize, f: F) -> Vec<R>
    where
        R: Send,
        F: Fn(usize) -> R + Sync + Send,
    {
        match self {
            Par::Seq => (0..n).map(f).collect(),
            #[cfg(feature = "rayon")]
            Par::Rayon(_) => {
                use rayon::prelude::*;
                self.install(|| (0..n).into_par_iter().map(f).collect())
            }
        }
    }

    /// Runs `op` inside a pool of the requested size (the current pool for `Rayon(0)` and `Seq`).
    ///
    /// ```
    /// assert_eq!(modelopt_tensor_core::Par::Seq.install(|| 7), 7);
    /// ```
    pub fn install<R: Send, F: FnOnce() -> R + Send>(self, op: F) -> R {
        match self {
            Par::Seq => op(),
            #[cfg(feature = "rayon")]
            Par::Rayon(0) => op(),
            #[cfg(feature = "rayon")]
            Par::Rayon(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => pool.install(op),
                // A pool that cannot be built (resource limits) still gives a correct answer.
                Err(_) => op(),
            },
        }
    }
}
