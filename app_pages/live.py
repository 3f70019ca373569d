"""Live: the running trial, redrawn every second without reloading the page (st.fragment run_every).

Follows the newest running trial by default (and switches to a new one when it
starts); ``?trial=<file in the data folder>`` or the selector pins one.
"""

import streamlit as st

from app_pages._paths import OutsideDataFolder, confine, list_trials, relative_name, running_trials
from app_pages._view import REFRESH_S, data_folder, guarded, live_updates, show_trial, trial_choices, trial_from_query

FOLLOW = "Follow the running trial"


@guarded("The Live page")
def live_page() -> None:
    """Pick the trial (followed or pinned) and draw it in a fragment that refreshes every second."""
    folder = data_folder()
    if folder is None:
        return
    pinned = trial_from_query(folder)
    options = [FOLLOW, *trial_choices(folder)]
    pinned_name = relative_name(folder, pinned) if pinned is not None else None
    if pinned_name is not None and pinned_name not in options:
        options.append(pinned_name)

    def _pin() -> None:
        """Keep the URL in step with the selector, so the page can be bookmarked."""
        value = st.session_state["live-trial"]
        if value == FOLLOW:
            st.query_params.pop("trial", None)
        else:
            st.query_params["trial"] = value

    choice = st.selectbox(
        "Trial", options, index=options.index(pinned_name) if pinned_name else 0, key="live-trial", on_change=_pin
    )
    updating = live_updates("live")

    @st.fragment(run_every=REFRESH_S if updating else None)
    @guarded("The Live page")
    def live_trial() -> None:
        """One refresh: find the trial to show, read what is new in it, draw it."""
        if choice == FOLLOW:
            running = running_trials(folder)
            if running:
                path = running[0]
                if len(running) > 1:
                    st.caption(f"{len(running)} trials are running; this is the newest. Pick another above.")
            else:
                trials = list_trials(folder)
                if not trials:
                    st.info(
                        f"No trial files in `{folder.trials}` yet. This page shows a trial as soon as "
                        "`remdaq run` starts one."
                    )
                    return
                path = trials[0]
                st.info(
                    "No trial is running now: this is the most recent one. The page switches to a new "
                    "trial as soon as it starts."
                )
        else:
            try:
                path = confine(folder, choice)
            except OutsideDataFolder as error:
                st.error(f"Refused: {error}.")
                return
        show_trial(folder, path, key="live", frozen=not updating)

    live_trial()


st.title("Live")
live_page()
