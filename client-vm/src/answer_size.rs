//! The size of a typed call's answer, measured the way [`crate::values_size`] measures a
//! dynamic one, so that both kinds of call are held to the policy's `output_bytes`.
//!
//! wasmtime lifts a typed answer straight into Rust values, with no common form to measure,
//! so the result types of [`crate::Client::call_typed`] and [`crate::Sandbox::run_typed`]
//! implement [`AnswerSize`]: it is implemented here for the primitive types, `String`,
//! `Vec`, `Box`, `Option`, `Result` and tuples up to eight; a record or variant type an
//! application defines implements it by adding up its fields.

/// Approximate size in bytes of a value copied out of a proxy (strings by their length,
/// numbers by their width, containers by their contents).
pub trait AnswerSize {
    /// The size; may stop counting once past `cap` (the caller only needs to know it did).
    fn answer_size(&self, cap: usize) -> usize;
}

macro_rules! fixed {
    ($($t:ty => $n:expr),* $(,)?) => {
        $(impl AnswerSize for $t {
            fn answer_size(&self, _: usize) -> usize {
                $n
            }
        })*
    };
}

fixed!(
    () => 0, bool => 1, u8 => 1, i8 => 1, u16 => 2, i16 => 2, u32 => 4, i32 => 4,
    f32 => 4, char => 4, u64 => 8, i64 => 8, f64 => 8,
);

impl AnswerSize for String {
    fn answer_size(&self, _: usize) -> usize {
        self.len()
    }
}

impl<T: AnswerSize> AnswerSize for Vec<T> {
    fn answer_size(&self, cap: usize) -> usize {
        let mut total = 4usize;
        for item in self {
            if total > cap {
                break;
            }
            total = total.saturating_add(item.answer_size(cap));
        }
        total
    }
}

impl<T: AnswerSize + ?Sized> AnswerSize for Box<T> {
    fn answer_size(&self, cap: usize) -> usize {
        (**self).answer_size(cap)
    }
}

impl<T: AnswerSize> AnswerSize for Option<T> {
    fn answer_size(&self, cap: usize) -> usize {
        self.as_ref()
            .map_or(4, |v| v.answer_size(cap).saturating_add(4))
    }
}

impl<T: AnswerSize, E: AnswerSize> AnswerSize for Result<T, E> {
    fn answer_size(&self, cap: usize) -> usize {
        4usize.saturating_add(match self {
            Ok(v) => v.answer_size(cap),
            Err(e) => e.answer_size(cap),
        })
    }
}

macro_rules! tuples {
    ($(($($t:ident $i:tt),+))*) => {
        $(impl<$($t: AnswerSize),+> AnswerSize for ($($t,)+) {
            fn answer_size(&self, cap: usize) -> usize {
                let mut total = 0usize;
                $(total = total.saturating_add(self.$i.answer_size(cap));)+
                total
            }
        })*
    };
}

tuples!(
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Val;

    #[test]
    fn a_typed_answer_measures_like_its_dynamic_form() {
        let typed: (Result<String, String>,) = (Ok("hello".into()),);
        let dynamic = [Val::Result(Ok(Some(Box::new(Val::String("hello".into())))))];
        assert_eq!(
            typed.answer_size(1 << 20),
            crate::values_size(&dynamic, 1 << 20)
        );
        let list: (Vec<u32>,) = (vec![1, 2, 3],);
        let dynamic = [Val::List(vec![Val::U32(1), Val::U32(2), Val::U32(3)])];
        assert_eq!(
            list.answer_size(1 << 20),
            crate::values_size(&dynamic, 1 << 20)
        );
        // Counting stops once past the cap.
        let long: Vec<String> = vec!["x".repeat(100); 1000];
        assert!(long.answer_size(150) <= 300);
    }
}
