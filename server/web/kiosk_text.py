"""A kiosk's problems as a secretary reads them on the web: what is wrong, and what to do next.

The health check (``server.kiosks.health``) states each problem for every reader of the API;
the web adds the next step a secretary can take, in plain words: no commands, no codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.kiosks.schemas import HealthProblem, KioskHealth

NEXT_STEPS: dict[str, str] = {
    "not_enrolled": "请系统管理员到签到机旁，用登记码完成登记；登记码过期可在本页重新生成。",
    "never_seen": "请检查签到机是否已开机并连上网络；半小时后仍无消息，请联系系统管理员。",
    "silent": (
        "请检查签到机是否开着、网线或无线网络是否正常。断网期间的刷卡保存在签到机里，"
        "恢复联网后会自动上传，请不要关机重装。"
    ),
    "clock_offset": "签到时间以服务器校正后的时间为准，不影响签到；请联系系统管理员校准签到机的时间。",
    "upload_backlog": (
        "刷卡记录保存在签到机里，联网后会自动上传。请检查签到机的网络；在此之前，这些党员的签到暂不显示在签到表上。"
    ),
    "quarantined": (
        "这些记录仍保存在签到机里，请不要重装或更换签到机，并联系系统管理员查明原因后重新上传；"
        "如急需，可先在签到表上为相关党员补签。"
    ),
    "seq_gaps": "可能有刷卡记录丢失。请核对这段时间的签到表，为漏记的党员补签，并告知系统管理员。",
    "reader": "请检查读卡器的连接线是否插好，重新插拔后等一分钟；仍不正常，请联系系统管理员。",
}
GENERIC_NEXT_STEP = "请联系系统管理员处理。"


@dataclass(frozen=True)
class ShownProblem:
    message: str
    next_step: str
    level: str


def shown_problems(kiosk: KioskHealth) -> list[ShownProblem]:
    """Each of the kiosk's problems with its next step."""
    return [_shown(kiosk, problem) for problem in kiosk.problems]


def _shown(kiosk: KioskHealth, problem: HealthProblem) -> ShownProblem:
    message = problem.message
    if problem.code == "never_seen":
        message = "从未收到这台签到机的消息"
    elif problem.code == "silent":
        message = message.replace("没有心跳", "没有收到签到机的消息")
    elif problem.code == "quarantined":
        # The health check's own text ends with the agent's command line, for administrators.
        oldest = (
            f"（最早编号 {kiosk.oldest_quarantined_seq}）" if kiosk.oldest_quarantined_seq is not None else ""
        )
        message = f"{kiosk.outbox_quarantined}条刷卡记录被服务器反复拒收，已在签到机上隔离保存{oldest}"
    return ShownProblem(message, NEXT_STEPS.get(problem.code, GENERIC_NEXT_STEP), problem.level)
