"""The LLM player of a Digital Card Game, started by AgentBench's referee (judger.py) in place of
AgentBench's AI_SDK/Python/main.py: the same player (AI_En.Agent: its prompts, its parsing and
checks, its 5 tries per decision), but each LLM call goes to our DCGEnv over a Unix socket, one
JSON line each way, instead of AgentBench's TCP task server. stdout belongs to the referee: never
print here.

    python dcg_player.py <build dir> <stage> <order> <save_dir> <socket>

Each request also carries the move rule-based baseline 2 (action2.AI) would make in this
position, in the format the LLM is asked for: the env's expert replays it through the LLM's seat.
"""
import json
import os
import socket
import sys

FIXED_REPLY = "Okay, I will play the game with you according to the rules."  # AgentBench's client.py


class SocketClient:
    """AgentBench's client.Client.llm_call, over our socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rw", encoding="utf-8")
        self.player = None        # set by Player: what it accepted so far, the expert's move

    def llm_call(self, history, prompt, system):
        if system:
            history.append((system, FIXED_REPLY))
        messages = []
        for user, agent in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": agent}]
        messages.append({"role": "user", "content": prompt})
        player = self.player
        request = {"messages": messages, "system": system, "prompt": prompt, "expert": player.expert,
                   "accepted": len(player.history) + len(player.assert_history)}
        self.file.write(json.dumps(request, ensure_ascii=False) + "\n")
        self.file.flush()
        line = self.file.readline()
        if not line:  # the env is gone: end the game
            sys.exit(1)
        return json.loads(line)["reply"]

    def quit(self):
        self.sock.close()


def main():
    build, stage, order, save_dir, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    sys.path.insert(0, os.path.join(build, "AI_SDK", "Python"))
    import action2
    from AI_En import Agent

    class Player(Agent):
        """AI_En.Agent, plus baseline 2's move for each decision (its state lives here too)."""
        ass, add_possible = action2.AI.ass, action2.AI.add_possible  # baseline 2's helpers

        def __init__(self, client):
            super().__init__(client, stage, order, save_dir)
            self.expert = ""
            self.has_failed = [[False] * 5 for _ in range(4)]
            self.last_fish, self.last_type = -1, -1
            self.to_assert = {i: {"skill": -1, "passive": -1} for i in range(4)}

        def Assert(self, game):
            if self.stage != 1:
                position, kind = action2.AI.Assert(self, game)
                self.expert = "" if position == -1 else json.dumps(
                    {"guess_type": self.id_to_name[kind], "target_position": position})
            return super().Assert(game)

        def Act(self, game):
            act = action2.AI.Act(self, game)
            fish, kind = act.get_action_fish(), act.get_action_type()
            target = act.get_friend_target() if act.get_friend_target() >= 0 else act.get_enemy_target()
            self.expert = json.dumps({"pick_fish": self.pos_to_name[fish], "action": ("normal", "active")[kind],
                                      "target_position": max(target, 0)})
            return super().Act(game)

    client = SocketClient(path)
    player = Player(client)
    client.player = player
    player.run()
    client.quit()


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # the referee hides our stderr: leave the reason where the env looks
        import traceback
        with open(os.path.join(sys.argv[4], "player_error.txt"), "w") as f:
            f.write(traceback.format_exc())
        raise
