//! Quality of a classifier on labelled messages: the confusion counts and precision, recall and
//! F1 of the "lead" class.

use crate::LeadClassifier;

/// Confusion counts of the "lead" class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    pub true_positive: usize,
    pub false_positive: usize,
    pub false_negative: usize,
    pub true_negative: usize,
}

impl Metrics {
    /// Counts one verdict against its label.
    pub fn add(&mut self, predicted: bool, actual: bool) {
        match (predicted, actual) {
            (true, true) => self.true_positive += 1,
            (true, false) => self.false_positive += 1,
            (false, true) => self.false_negative += 1,
            (false, false) => self.true_negative += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &Metrics) {
        self.true_positive += other.true_positive;
        self.false_positive += other.false_positive;
        self.false_negative += other.false_negative;
        self.true_negative += other.true_negative;
    }

    /// Messages counted.
    pub fn total(&self) -> usize {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// Of the messages called leads, the share that are (1 when none was called a lead).
    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    /// Of the leads, the share found (1 when there were none).
    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    /// The harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(hit: usize, of: usize) -> f64 {
    if of == 0 {
        1.0
    } else {
        hit as f64 / of as f64
    }
}

/// Classifies every text and counts the verdicts against the labels.
pub fn evaluate<'a>(
    classifier: &dyn LeadClassifier,
    labelled: impl IntoIterator<Item = (&'a str, bool)>,
) -> Metrics {
    let mut m = Metrics::default();
    for (text, lead) in labelled {
        m.add(classifier.classify(text).lead, lead);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_of_known_counts() {
        let mut m = Metrics::default();
        for (p, a) in [
            (true, true),
            (true, true),
            (true, false),
            (false, true),
            (false, false),
        ] {
            m.add(p, a);
        }
        assert_eq!(m.total(), 5);
        assert!((m.precision() - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.recall() - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.f1() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(Metrics::default().f1(), 2.0 * 1.0 * 1.0 / 2.0);
    }
}
