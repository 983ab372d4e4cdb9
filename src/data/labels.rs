//! The paper's label handling (`rner/utils.py`): `process_label`, `is_valid_label`, and the
//! processed schema shown in the prompt (lower-cased, stripped, invalid removed, sorted).

/// Labels the paper's loader treats as "no type": their mentions leave the gold set and the schema.
pub const INVALID_LABELS: [&str; 6] = ["na", "n a", "misc", "else", "other", "nan"];

/// `l.lower().strip()`
pub fn process_label(label: &str) -> String {
    label.to_lowercase().trim().to_string()
}

/// False when the label is empty after stripping or its processed form is in [`INVALID_LABELS`].
pub fn is_valid_label(label: &str) -> bool {
    let p = process_label(label);
    !p.is_empty() && !INVALID_LABELS.contains(&p.as_str())
}

/// Lower-case and strip each label, drop invalid ones, sort by code point (Python's default
/// string sort). Duplicates are kept, as the paper's code keeps them.
pub fn process_schema<S: AsRef<str>>(labels: &[S]) -> Vec<String> {
    let mut out: Vec<String> = labels
        .iter()
        .map(|l| process_label(l.as_ref()))
        .filter(|l| is_valid_label(l))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_lowercased_sorted_and_filtered() {
        let s = process_schema(&["Restaurant Name", " Amenity", "else", "MISC", "Other ", "Dish", "NaN", "n a"]);
        assert_eq!(s, vec!["amenity", "dish", "restaurant name"]);
    }

    #[test]
    fn invalid_labels() {
        assert!(!is_valid_label("  "));
        assert!(!is_valid_label("Misc"));
        assert!(!is_valid_label(" N A "));
        assert!(is_valid_label("organisation"));
    }
}
