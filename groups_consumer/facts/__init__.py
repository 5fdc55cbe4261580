"""Learner facts: the data the built-in criteria read, behind the ``LearnerFacts`` backend interface."""
