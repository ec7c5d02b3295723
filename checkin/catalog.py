"""Every text a patient or staff member receives, in English and Spanish.

Rules for anything added here (CLINICAL.md "Messaging compliance"):
- no diagnosis, drug or score in any text: a phone's lock screen is not private;
- stay inside one GSM-7 segment (160 characters) where possible: no curly quotes or dashes,
  which force UCS-2 and double the cost;
- placeholders are str.format fields filled by `render`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LANGUAGES = ("en", "es")
# Words that would put a diagnosis, a drug or a treatment on a patient's lock screen
# (CLINICAL.md "Messaging compliance": texts carry the minimum, no diagnosis, no drug names).
# Not symptoms: the PHQ-2 asks about feeling "depressed", and the crisis reply must name the
# Suicide & Crisis Lifeline.
# Every catalog text is checked against them (tests/test_safety_text.py), and so are the
# program name and support contact a clinic configures (config.py), which texts include.
HEALTH_WORDS = re.compile(
    r"(?<!\w)(ms|m\.s\.|sclerosis|esclerosis|ketamin[ae]|esketamin[ae]|spravato|ketalar|"
    r"depression|depresi[oó]n|infusions?|infusi[oó]n(es)?|psychiatr\w*|psiquiatr\w*)(?!\w)",
    re.IGNORECASE,
)


def health_word(text: str) -> str | None:
    """The first word of `text` that names a diagnosis, drug or treatment, else None."""
    found = HEALTH_WORDS.search(text)
    return found.group(0) if found else None


# Sent by email, not SMS: the one-segment rule does not apply; the first line is the subject.
EMAIL_KEYS = frozenset({"staff_alert_email", "staff_digest"})

CATALOG: dict[str, dict[str, str]] = {
    "welcome": {
        "en": "{program}: you are enrolled in text check-ins, about 1 short check-in a day. "
        "Msg & data rates may apply. Reply HELP for help, STOP to opt out.",
        "es": "{program}: esta inscrito en mensajes de control, cerca de 1 breve al dia. "
        "Pueden aplicar tarifas. Responda AYUDA (HELP) o STOP para salir.",
    },
    "ask_fatigue": {
        "en": "How tired have you felt today? Reply 0 (none) to 10 (worst).",
        "es": "Cuanto cansancio ha sentido hoy? Responda 0 (nada) a 10 (el peor).",
    },
    "ask_pain": {
        "en": "How much pain have you had today? Reply 0 (none) to 10 (worst).",
        "es": "Cuanto dolor ha tenido hoy? Responda 0 (nada) a 10 (el peor).",
    },
    "ask_mood": {
        "en": "How is your mood today? Reply 0 (very low) to 10 (very good).",
        "es": "Como esta su animo hoy? Responda 0 (muy bajo) a 10 (muy bueno).",
    },
    "ask_phq2_interest": {
        "en": "Past 2 weeks: how often little interest or pleasure in doing things? "
        "0 not at all, 1 several days, 2 more than half the days, 3 nearly every day",
        "es": "Ultimas 2 semanas: cuantas veces poco interes o placer en hacer cosas? "
        "0 para nada, 1 varios dias, 2 mas de la mitad, 3 casi todos los dias",
    },
    "ask_phq2_down": {
        "en": "Past 2 weeks: how often feeling down, depressed or hopeless? "
        "0 not at all, 1 several days, 2 more than half the days, 3 nearly every day",
        "es": "Ultimas 2 semanas: cuantas veces decaido, deprimido o sin esperanza? "
        "0 para nada, 1 varios dias, 2 mas de la mitad, 3 casi todos los dias",
    },
    "ask_se_dissociation": {
        "en": "Since your treatment, have you felt unreal or detached from yourself? "
        "Reply YES or NO (or NONE if you had no side effects at all).",
        "es": "Desde su tratamiento, se ha sentido irreal o desconectado de si mismo? "
        "Responda SI o NO (o NINGUNO si no tuvo ningun efecto).",
    },
    "ask_se_nausea": {
        "en": "Nausea or vomiting? Reply YES or NO.",
        "es": "Nauseas o vomitos? Responda SI o NO.",
    },
    "ask_se_headache": {
        "en": "Headache? Reply YES or NO.",
        "es": "Dolor de cabeza? Responda SI o NO.",
    },
    "ask_se_dizziness": {
        "en": "Dizziness? Reply YES or NO.",
        "es": "Mareos? Responda SI o NO.",
    },
    "ask_se_blurred_vision": {
        "en": "Blurred vision? Reply YES or NO.",
        "es": "Vision borrosa? Responda SI o NO.",
    },
    "ask_se_anxiety": {
        "en": "Feeling anxious? Reply YES or NO.",
        "es": "Se siente ansioso? Responda SI o NO.",
    },
    "ask_se_bladder_pain": {
        "en": "Pain or burning when you pee? Reply YES or NO.",
        "es": "Dolor o ardor al orinar? Responda SI o NO.",
    },
    "ask_se_urinary_urgency": {
        "en": "Needing to pee urgently or very often? Reply YES or NO.",
        "es": "Necesidad urgente o muy frecuente de orinar? Responda SI o NO.",
    },
    "ask_se_blood_in_urine": {
        "en": "Any blood in your urine? Reply YES or NO.",
        "es": "Sangre en la orina? Responda SI o NO.",
    },
    "reask_one": {
        "en": "Sorry, please send just one number from {low} to {high}.",
        "es": "Perdon, envie un solo numero del {low} al {high}.",
    },
    "reask_yesno": {
        "en": "Sorry, please reply YES or NO.",
        "es": "Perdon, responda SI o NO.",
    },
    "reminder": {
        "en": "Reminder: your check-in is still open.",
        "es": "Recordatorio: su control sigue abierto.",
    },
    "late_reply": {
        "en": "Thanks. That check-in has closed, but your care team can see your message. "
        "In an emergency call 911.",
        "es": "Gracias. Ese control ya cerro, pero su equipo puede ver su mensaje. "
        "En una emergencia llame al 911.",
    },
    "stop_request": {
        "en": "We passed your message to your care team. To stop all texts now, reply STOP.",
        "es": "Pasamos su mensaje a su equipo. Para no recibir mas mensajes, responda STOP.",
    },
    "unknown_sender": {
        "en": "This automated number did not recognise yours. If you expected texts, contact "
        "your clinic. In an emergency call 911.",
        "es": "Este numero automatico no reconocio el suyo. Si esperaba mensajes, llame a su "
        "clinica. En una emergencia llame al 911.",
    },
    "reask": {
        "en": "Sorry, please reply with a number from {low} to {high}.",
        "es": "Perdon, responda con un numero del {low} al {high}.",
    },
    "skipped_question": {
        "en": "No problem, we will skip that one.",
        "es": "No hay problema, saltaremos esa pregunta.",
    },
    "thanks": {
        "en": "Thank you, your answers are saved. This number is not watched around the clock: "
        "in an emergency call 911.",
        "es": "Gracias, sus respuestas se guardaron. Este numero no se atiende todo el tiempo: "
        "en una emergencia llame al 911.",
    },
    "no_open_checkin": {
        "en": "Thanks for your message. There is no check-in open now. Reply HELP for help. "
        "In an emergency call 911.",
        "es": "Gracias por su mensaje. No hay un control abierto ahora. Responda AYUDA. "
        "En una emergencia llame al 911.",
    },
    "stop_confirm": {
        "en": "{program}: you are unsubscribed and will get no more texts. Reply START to "
        "resubscribe.",
        "es": "{program}: se dio de baja y no recibira mas mensajes. Responda START para volver.",
    },
    "start_confirm": {
        "en": "{program}: you are subscribed to check-in texts again. Msg & data rates may "
        "apply. Reply HELP for help, STOP to opt out.",
        "es": "{program}: recibira de nuevo los mensajes de control. Pueden aplicar tarifas. "
        "Responda AYUDA o STOP para salir.",
    },
    "help": {
        "en": "{program} check-ins: about 1 text a day. Help: {support}. Msg & data rates "
        "may apply. Reply STOP to opt out.",
        "es": "{program}: cerca de 1 mensaje al dia. Ayuda: {support}. Pueden aplicar "
        "tarifas. Responda STOP para salir.",
    },
    "crisis": {
        "en": "If you are in danger, call 911. Call or text 988 (Suicide & Crisis Lifeline, "
        "24/7). Your care team will contact you. This number is not watched 24/7.",
        "es": "Si esta en peligro, llame al 911. Llame o envie texto al 988 (Linea 988, 24/7). "
        "Su equipo le contactara. Este numero no se atiende 24/7.",
    },
    # Staff-facing: a reference, the kind, the severity and a link. Nothing about the patient.
    "staff_alert": {
        "en": "checkin {severity} alert {ref}: {kind}. Details: {link} Reply ACK {ref} to "
        "acknowledge.",
        "es": "checkin alerta {severity} {ref}: {kind}. Detalles: {link} Responda ACK {ref} "
        "para confirmar.",
    },
    # The first line is the subject.
    "staff_alert_email": {
        "en": "checkin {severity} alert {ref}: {kind}\n\nOpen {link} to see the evidence and "
        "to acknowledge or resolve it. You can also text ACK {ref} from your registered phone.",
        "es": "checkin alerta {severity} {ref}: {kind}\n\nAbra {link} para ver la evidencia y "
        "confirmarla o cerrarla. Tambien puede enviar ACK {ref} desde su telefono registrado.",
    },
    "staff_ack": {
        "en": "Acknowledged {ref}. Resolve it with a note on the dashboard.",
        "es": "Confirmada {ref}. Cierrela con una nota en el panel.",
    },
    "staff_ack_failed": {
        "en": "Not acknowledged: {reason}.",
        "es": "No confirmada: {reason}.",
    },
    "staff_digest": {
        "en": "checkin daily digest: {count} routine alert(s)\n\n{lines}\n\nRoutine alerts are "
        "not paged; open each link to acknowledge or resolve it.",
        "es": "checkin resumen diario: {count} alerta(s) de rutina\n\n{lines}\n\nLas alertas "
        "de rutina no se envian por SMS; abra cada enlace para confirmarla o cerrarla.",
    },
}


def render(key: str, language: str = "en", params: Mapping[str, object] | None = None) -> str:
    """The text for `key` in `language` (English when the language is unknown)."""
    texts = CATALOG[key]
    template = texts.get(language) or texts["en"]
    return template.format(**(params or {}))
