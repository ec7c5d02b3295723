"""daily_symptoms: fatigue, pain and mood on 0-10, one question per text (DESIGN.md names).

Scales from CLINICAL.md "Instruments": pain 0 none - 10 worst (Farrar 2001); fatigue 0-10 as a
monitoring item (Chuang 2015); mood 0 very low - 10 very good.
"""

from checkin.flows.engine import Flow, Question

FLOW_V1 = Flow(
    name="daily_symptoms",
    version=1,
    questions=(
        Question(
            "fatigue",
            "ask_fatigue",
            labels=("fatigue", "tired", "tiredness", "energy level", "cansancio", "fatiga"),
        ),
        Question("pain", "ask_pain", labels=("pain", "dolor")),
        Question("mood", "ask_mood", labels=("mood", "estado de animo", "animo")),
    ),
)

VERSIONS = {1: FLOW_V1}
CURRENT = FLOW_V1
