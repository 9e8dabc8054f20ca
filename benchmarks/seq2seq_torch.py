"""The PyTorch tutorial's seq2seq model, for ``benchmarks/seq2seq_speed.py`` to time against.

The structure of "NLP From Scratch: Translation with a Sequence to Sequence Network and
Attention" (pytorch/tutorials, ``intermediate_source/seq2seq_translation_tutorial.py``): a GRU
encoder over embeddings with dropout, Bahdanau attention (``Va(tanh(Wa(query) + Ua(keys)))``), a
GRU decoder fed ``[embedding; context]`` and started from the encoder's final hidden state, its
output read by a linear layer, teacher forcing over the target positions in a Python loop, NLL
loss of ``log_softmax``, Adam. One change: the loss ignores padding (``ignore_index``), as the
rnnjax model's masked loss does.
"""

import torch
import torch.nn.functional as F
from torch import nn


class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, tokens):
        return self.gru(self.dropout(self.embedding(tokens)))


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys))).squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        return torch.bmm(weights, keys), weights


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, inputs):
        """Teacher forcing over ``inputs [B, T]``: log-probabilities ``[B, T, V]``."""
        hidden, outputs = encoder_hidden, []
        for i in range(inputs.size(1)):
            output, hidden = self.forward_step(inputs[:, i : i + 1], hidden, encoder_outputs)
            outputs.append(output)
        return F.log_softmax(torch.cat(outputs, dim=1), dim=-1)

    def forward_step(self, tokens, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(tokens))
        query = hidden.permute(1, 0, 2)
        context, _ = self.attention(query, encoder_outputs)
        output, hidden = self.gru(torch.cat((embedded, context), dim=2), hidden)
        return self.out(output), hidden

    @torch.no_grad()
    def greedy(self, encoder_outputs, encoder_hidden, bos_id, max_length):
        """The tutorial's evaluation loop, batched: ``max_length`` steps of argmax."""
        tokens = torch.full((encoder_outputs.size(0), 1), bos_id, dtype=torch.long)
        hidden, result = encoder_hidden, []
        for _ in range(max_length):
            output, hidden = self.forward_step(tokens, hidden, encoder_outputs)
            tokens = output.argmax(-1)
            result.append(tokens)
        return torch.cat(result, dim=1)


def build(src_vocab, tgt_vocab, hidden_size, pad_id=0, lr=1e-3, seed=0):
    """The encoder, decoder and a ``train_step(src, tgt_in, tgt_out) -> loss`` closure."""
    torch.manual_seed(seed)
    encoder, decoder = EncoderRNN(src_vocab, hidden_size), AttnDecoderRNN(hidden_size, tgt_vocab)
    enc_opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    dec_opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    criterion = nn.NLLLoss(ignore_index=pad_id)

    def train_step(src, tgt_in, tgt_out):
        encoder.train(), decoder.train()
        enc_opt.zero_grad(), dec_opt.zero_grad()
        encoder_outputs, encoder_hidden = encoder(src)
        log_probs = decoder(encoder_outputs, encoder_hidden, tgt_in)
        loss = criterion(log_probs.reshape(-1, log_probs.size(-1)), tgt_out.reshape(-1))
        loss.backward()
        enc_opt.step(), dec_opt.step()
        return loss.item()

    return encoder, decoder, train_step
