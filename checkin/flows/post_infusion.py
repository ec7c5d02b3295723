"""post_infusion: side effects about 24 h after an infusion, then mood 0-10.

The side effects are CLINICAL.md's "Ketamine follow-up" list. Each is a yes/no question;
"none" answers all of them at once. Blood in the urine or bladder pain opens a side_effect
alert (ketamine cystitis). Texts say "treatment", never the drug's name.
"""

from checkin.flows.engine import Flow, Question

SIDE_EFFECTS = (
    ("se_dissociation", "ask_se_dissociation"),
    ("se_nausea", "ask_se_nausea"),
    ("se_headache", "ask_se_headache"),
    ("se_dizziness", "ask_se_dizziness"),
    ("se_blurred_vision", "ask_se_blurred_vision"),
    ("se_anxiety", "ask_se_anxiety"),
    ("se_bladder_pain", "ask_se_bladder_pain"),
    ("se_urinary_urgency", "ask_se_urinary_urgency"),
    ("se_blood_in_urine", "ask_se_blood_in_urine"),
)
# A yes to either opens a side_effect alert (CLINICAL.md: bladder symptoms suggest cystitis).
ALERTING = frozenset({"se_bladder_pain", "se_blood_in_urine"})

FLOW_V1 = Flow(
    name="post_infusion",
    version=1,
    questions=tuple(
        Question(measure, prompt, kind="yesno", low=0, high=1, group="side_effects")
        for measure, prompt in SIDE_EFFECTS
    )
    + (Question("mood", "ask_mood", labels=("mood", "estado de animo", "animo")),),
)

VERSIONS = {1: FLOW_V1}
CURRENT = FLOW_V1
